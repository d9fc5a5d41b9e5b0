"""Progress bars on long work: one tqdm bar on stderr (stdout stays for results), off with the
command's ``--no-progress`` switch. Used by ``face-blur run``/``render``/``postprocess`` and by
``scripts/upload_video.py`` and ``scripts/download_video.py``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm


def progress_bar(total: int | None, desc: str, enabled: bool, unit: str = "frame") -> tqdm:
    """A bar of ``total`` items (unknown: None or 0, then it counts without a percentage)."""
    from tqdm import tqdm

    return tqdm(total=total or None, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, leave=True)
