"""The container's entry point, ``python -m handler.serve`` (Dockerfile, README, tests): the server
itself is :mod:`handler.serving.serve`; this name stays so that images and scripts keep working."""

from __future__ import annotations

import sys

from handler.serving.serve import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
