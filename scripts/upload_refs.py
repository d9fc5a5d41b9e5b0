#!/usr/bin/env python3
"""Upload reference photos of the people to keep clear (mode unknown) or to blur (mode known).

    python scripts/upload_refs.py --job JOB alice=photos/alice bob=bob1.jpg [REFS_DIR ...]

Each argument is ``PERSON=PATH`` (a photo or a folder of photos of that person) or a folder whose
sub-folders are people (``REFS_DIR/<person>/<photo>.jpg``). Photos go to
``s3://<bucket>/input/<job>/refs/<person>/<photo>``, beside the frames, so the same transform job
embeds them. Each photo must show exactly one face (post-processing names a photo that does not).
Exit 0 on success, 1 on an error (one line), 2 for usage.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from deployment import (
    IMAGE_SUFFIXES,
    Deployment,
    add_deployment_arguments,
    run_script,
    upload_files,
)

log = logging.getLogger("upload_refs")

PERSON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _photos(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: not a photo ({', '.join(IMAGE_SUFFIXES)})")
        return [path]
    if path.is_dir():
        photos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise ValueError(f"{path}: no photos ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return photos
    raise ValueError(f"{path}: no such file or folder")


def collect_references(specs: Sequence[str]) -> dict[str, list[Path]]:
    """``PERSON=PATH`` and people folders -> ``{person: [photos]}``; errors name the bad argument."""
    people: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep:
            entries = [(name, Path(rest))]
        else:
            root = Path(spec)
            if not root.is_dir():
                raise ValueError(f"{spec}: give PERSON=PATH, or a folder with one sub-folder per person")
            entries = [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir()]
            if not entries:
                raise ValueError(f"{spec}: no person sub-folders")
        for person, path in entries:
            if not PERSON.match(person):
                raise ValueError(f"person name {person!r} must be 1-64 letters, digits, '.', '_' or '-'")
            people.setdefault(person, []).extend(_photos(path))
    for person, photos in people.items():
        names = [p.name for p in photos]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"person {person!r} has two photos named {clash[0]}: rename one")
    return people


def upload_references(dep: Deployment, s3, job: str, people: dict[str, list[Path]], workers: int = 16) -> int:
    """Upload the photos; returns how many."""
    pairs = [(photo, dep.key("references", job, f"{person}/{photo.name}"))
             for person, photos in sorted(people.items()) for photo in photos]
    count = upload_files(s3, dep.bucket, pairs, workers)
    log.info("uploaded %d photos of %d people to %s", count, len(people), dep.uri("references", job))
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload_refs.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("refs", nargs="+", metavar="PERSON=PATH|DIR",
                        help="PERSON=photo or PERSON=folder of photos, or a folder of person sub-folders")
    parser.add_argument("--workers", type=int, default=16, help="parallel uploads")
    add_deployment_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work(dep: Deployment) -> None:
        people = collect_references(args.refs)
        upload_references(dep, dep.session().client("s3"), args.job, people, args.workers)

    return run_script("upload_refs.py", args, work)

if __name__ == "__main__":
    sys.exit(main())
