"""The model manifest (``model/manifest.json``): which model files exist, where they come from, their
hashes and licences, and for ArcFace-style embedders the input/output contract.

A *model directory* holds the files under the paths the manifest names (``mtcnn/pnet.onnx``,
``centerface.onnx``, ``arcfaceresnet100-8.onnx``, ``mobilefacenet.onnx``, ``dlib/*.dat``);
``python -m model.fetch --dest DIR`` fills one. No weights live in git. This module reads the
manifest and finds and checks files; it never downloads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
SCHEMA = "face-blur/models/v1"
ROLES = ("detector", "embedder")
RECORD_NAME = ".verified.json"  # hashes of files that fetch installed from a verified source


class ManifestError(ValueError):
    """The manifest is malformed or names no such model; the message says which entry and field."""


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the model directory, "/"-separated
    sha256: str | None  # None where no byte-stable hash exists (the source's hash is checked instead)


@dataclass(frozen=True)
class ModelEntry:
    """One manifest entry. ``input``/``output`` describe ArcFace-style embedders (see handler/arcface.py)."""

    name: str
    role: str
    backend: str
    files: tuple[ModelFile, ...]
    licence: str
    upstream: str
    description: str
    source: dict[str, Any] = field(default_factory=dict)
    installed: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    fetch_default: bool = True  # fetched when ``python -m model.fetch`` is given no names

    @property
    def main_file(self) -> ModelFile:
        return self.files[0]


def _entry(name: str, raw: Any) -> ModelEntry:
    where = f"manifest entry {name!r}"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where} must be an object")
    for key in ("role", "backend", "licence", "files", "source"):
        if key not in raw:
            raise ManifestError(f"{where} lacks {key!r}")
    if raw["role"] not in ROLES:
        raise ManifestError(f"{where}: role must be one of {ROLES}, got {raw['role']!r}")
    files = raw["files"]
    if not isinstance(files, list) or not files:
        raise ManifestError(f"{where}: files must be a non-empty list")
    parsed = []
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not f["path"]:
            raise ManifestError(f"{where}: files[{i}] needs a path")
        digest = f.get("sha256")
        if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
            raise ManifestError(f"{where}: files[{i}].sha256 must be 64 hex digits or null")
        if Path(f["path"]).is_absolute() or ".." in Path(f["path"]).parts:
            raise ManifestError(f"{where}: files[{i}].path must stay inside the model directory")
        parsed.append(ModelFile(f["path"], digest.lower() if digest else None))
    return ModelEntry(
        name=name, role=raw["role"], backend=raw["backend"], files=tuple(parsed),
        licence=raw["licence"], upstream=raw.get("upstream", ""), description=raw.get("description", ""),
        source=dict(raw["source"]), installed=raw.get("installed"),
        input=raw.get("input"), output=raw.get("output"),
        fetch_default=bool(raw.get("fetch_default", raw["source"].get("kind") != "manual")),
    )


def load_manifest(path: str | Path | None = None) -> dict[str, ModelEntry]:
    """All entries of the manifest (default: the one shipped in this package), by name."""
    path = Path(path) if path is not None else MANIFEST_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read model manifest {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ManifestError(f"{path}: schema must be {SCHEMA!r}")
    models = data.get("models")
    if not isinstance(models, dict):
        raise ManifestError(f"{path}: models must be an object")
    return {name: _entry(name, raw) for name, raw in models.items()}


def get_entry(name: str, manifest: dict[str, ModelEntry] | None = None) -> ModelEntry:
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise ManifestError(f"no model {name!r} in the manifest; known: {', '.join(sorted(manifest))}")
    return manifest[name]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_record(model_dir: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of files that fetch installed from a verified source."""
    try:
        data = json.loads((Path(model_dir) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def verify_file(path: str | Path, sha256: str | None) -> bool:
    """True when ``path`` is a file whose sha256 is ``sha256`` (False when there is no hash to check)."""
    path = Path(path)
    return sha256 is not None and path.is_file() and sha256_file(path) == sha256.lower()


def installed_path(entry: ModelEntry, model_file: ModelFile) -> Path | None:
    """Where an installed Python package carries this file (found without importing the package)."""
    if not entry.installed:
        return None
    rel = entry.installed.get("files", {}).get(model_file.path)
    if rel is None:
        return None
    try:
        spec = importlib.util.find_spec(entry.installed["module"])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / rel
        if candidate.is_file():
            return candidate
    return None


class IncompleteModelError(FileNotFoundError):
    """A model directory holds some of a model's files but not all: a broken install, never a reason
    to use another copy. The message names the first missing file."""


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling link is a broken install, not an absence


def locate(name: str, model_dir: str | Path | None, *, installed: bool = True,
           manifest: dict[str, ModelEntry] | None = None, strict: bool = False) -> list[Path] | None:
    """The model's files in manifest order: all from ``model_dir`` when every one is there, else
    (when ``installed``) all from the Python package the manifest names, else None.

    ``strict`` (the detectors): files that are present in ``model_dir`` take precedence, even when
    broken: when every file is present (a dangling link counts) they are returned for the loader to
    report a corrupt one; when only some are, :class:`IncompleteModelError` names the first missing.

    Only presence is checked here; a corrupt file is reported by whatever loads it, and
    ``python -m model.fetch`` verifies hashes.
    """
    entry = get_entry(name, manifest)
    if model_dir is not None:
        found = [Path(model_dir) / f.path for f in entry.files]
        if all(p.is_file() for p in found):
            return found
        if strict:
            present = [_present(p) for p in found]
            if all(present):
                return found
            if any(present):
                missing = next(p for p, here in zip(found, present, strict=True) if not here)
                raise IncompleteModelError(f"model file not found: {missing} (model {name} is incomplete in "
                                           f"{model_dir}; get it with: python -m model.fetch --dest {model_dir} "
                                           f"{name})")
    if installed:
        from_package = [installed_path(entry, f) for f in entry.files]
        if all(p is not None for p in from_package):
            return from_package  # type: ignore[return-value]
    return None
