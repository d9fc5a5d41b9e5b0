"""One small storage interface over local folders and ``s3://`` prefixes, chosen by URI scheme.

Every method takes a full URI (``s3://bucket/key``, ``file:///path`` or a plain path), so one
:class:`Store` serves inputs and outputs that live in different places. What it does:

- ``list(prefix)``: every object under a folder prefix, with its path relative to the prefix
  (S3: ListObjectsV2 pages of 1,000; local: a recursive walk). Sorted by relative path.
- ``read(uri)`` / ``write(uri, data)``: whole objects. A local write goes to a temporary name in
  the same folder and is renamed into place, so a reader never sees half a file; an S3 PUT is
  atomic already.
- ``copy(src, dst)``: S3 CopyObject (the bytes never leave S3); local: a file copy (atomic as above).
- ``head(uri)``: size and user metadata, or ``None`` when absent; ``exists(uri)``;
  ``delete(uri)`` (absent is fine).

S3 goes through one boto3 client (thread-safe, shared by the worker threads) with botocore's
``adaptive`` retry mode and 10 attempts in all: throttling (SlowDown, 503) and transient network errors are
retried with backoff by botocore. Anything left after that (access denied, no such bucket, a missing
key) raises :class:`StorageError` naming the URI, which stops the run. The endpoint comes from
``AWS_ENDPOINT_URL`` when set (boto3 reads it), so MinIO/LocalStack/moto work unchanged.

Many objects at once: :func:`postprocess.parallel.bounded_map`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from postprocess.tempfiles import create_temporary

log = logging.getLogger(__name__)

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                 ".json": "application/json"}


class StorageError(RuntimeError):
    """A storage operation that failed for good (after retries); ``uri`` names the object."""

    def __init__(self, uri: str, message: str, *, missing: bool = False) -> None:
        super().__init__(f"{uri}: {message}")
        self.uri = uri
        self.missing = missing


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: ``key`` is its path relative to the listed prefix (``/``-separated)."""

    key: str
    size: int


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``); raises ValueError without a bucket."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key


def local_path(uri: str) -> Path:
    """A plain path or ``file://`` URI as an absolute path."""
    if uri.startswith("file://"):
        uri = unquote(urlparse(uri).path)
    elif "://" in uri:
        raise ValueError(f"unsupported URI scheme in {uri!r} (use s3://, file:// or a path)")
    return Path(uri).expanduser().resolve()


def folder(uri: str) -> str:
    """The URI as a folder prefix: S3 with a trailing ``/`` (``s3://b/x`` never matches ``x2/``),
    local as an absolute path with a trailing separator."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        key = key.strip("/")
        return f"s3://{bucket}/{key}/" if key else f"s3://{bucket}/"
    return str(local_path(uri)).rstrip(os.sep) + os.sep


def join(prefix: str, relative: str) -> str:
    """``relative`` (``/``-separated) under the folder ``prefix``."""
    base = folder(prefix)
    if is_s3(base):
        return base + relative.lstrip("/")
    return str(Path(base, *relative.split("/")))


def overlaps(a: str, b: str) -> bool:
    """True when one folder is the other or contains it."""
    fa, fb = folder(a), folder(b)
    return fa.startswith(fb) or fb.startswith(fa)


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


class _S3:
    def __init__(self, client: Any) -> None:
        self.client = client

    def _fail(self, uri: str, exc: Exception) -> StorageError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            missing = code in ("NoSuchKey", "404", "NotFound")
            return StorageError(uri, f"{code}: {err.get('Message', '') or exc}", missing=missing)
        return StorageError(uri, f"{type(exc).__name__}: {exc}")

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        bucket, key = split_s3(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=key, PaginationConfig={"PageSize": 1000}):
                for obj in page.get("Contents", ()):
                    rel = obj["Key"][len(key):]
                    if rel and not rel.endswith("/"):
                        yield ObjectInfo(rel, int(obj.get("Size", 0)))
        except Exception as exc:  # botocore raises ClientError and connection errors
            raise self._fail(prefix, exc) from exc

    def read(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise self._fail(uri, exc) from exc

    def write(self, uri: str, data: bytes, metadata: dict[str, str] | None) -> None:
        bucket, key = split_s3(uri)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type(key),
                                   Metadata=metadata or {})
        except Exception as exc:
            raise self._fail(uri, exc) from exc

    def create(self, uri: str, data: bytes) -> bool:
        """Write only if no object is there (a conditional put, atomic in S3); False if one was."""
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type(key), IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise self._fail(uri, exc) from exc
        except Exception as exc:
            raise self._fail(uri, exc) from exc
        return True

    def copy(self, src: str, dst: str, metadata: dict[str, str] | None) -> None:
        sb, sk = split_s3(src)
        db, dk = split_s3(dst)
        try:
            self.client.copy_object(Bucket=db, Key=dk, CopySource={"Bucket": sb, "Key": sk},
                                    MetadataDirective="REPLACE", ContentType=content_type(dk),
                                    Metadata=metadata or {})
        except Exception as exc:
            raise self._fail(f"{src} -> {dst}", exc) from exc

    def head(self, uri: str) -> dict[str, Any] | None:
        bucket, key = split_s3(uri)
        try:
            resp = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            err = self._fail(uri, exc)
            if err.missing:  # not "404" in the message: a key like img0000404.png would match
                return None
            raise err from exc
        return {"size": int(resp.get("ContentLength", 0)), "metadata": dict(resp.get("Metadata", {}))}

    def delete(self, uri: str) -> None:
        bucket, key = split_s3(uri)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise self._fail(uri, exc) from exc


class _Local:
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        root = local_path(prefix)
        if not root.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.startswith(".") and ".tmp-" in name:
                    continue  # an unfinished atomic write
                path = Path(dirpath, name)
                found.append(ObjectInfo(path.relative_to(root).as_posix(), path.stat().st_size))
        yield from sorted(found, key=lambda o: o.key)

    def read(self, uri: str) -> bytes:
        path = local_path(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StorageError(str(path), "no such file", missing=True) from None
        except OSError as exc:
            raise StorageError(str(path), exc.strerror or str(exc)) from None

    def _atomic(self, dst: Path, fill: Callable[[Any], None]) -> None:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = create_temporary(dst)  # locked while written, mode from the umask
            try:
                with os.fdopen(fd, "wb") as fh:
                    fill(fh)
                    fh.flush()
                    os.replace(tmp, dst)  # while still locked
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(str(dst), exc.strerror or str(exc)) from None

    def write(self, uri: str, data: bytes, metadata: dict[str, str] | None) -> None:
        self._atomic(local_path(uri), lambda fh: fh.write(data))

    def create(self, uri: str, data: bytes) -> bool:
        path = local_path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as fh:
                fh.write(data)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(str(path), exc.strerror or str(exc)) from None
        return True

    def copy(self, src: str, dst: str, metadata: dict[str, str] | None) -> None:
        source = local_path(src)
        try:
            with source.open("rb") as fin:
                self._atomic(local_path(dst), lambda fh: shutil.copyfileobj(fin, fh, 1 << 20))
        except FileNotFoundError:
            raise StorageError(str(source), "no such file", missing=True) from None

    def head(self, uri: str) -> dict[str, Any] | None:
        path = local_path(uri)
        try:
            return {"size": path.stat().st_size, "metadata": {}}
        except FileNotFoundError:
            return None

    def delete(self, uri: str) -> None:
        path = local_path(uri)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(str(path), exc.strerror or str(exc)) from None


def s3_client(max_attempts: int = 10, retry_mode: str = "adaptive", max_pool_connections: int = 64) -> Any:
    """A boto3 S3 client with retries and a connection pool wide enough for the worker threads."""
    import boto3
    from botocore.config import Config

    # ``total_max_attempts`` counts the first try; botocore's ``max_attempts`` would count retries only.
    config = Config(retries={"total_max_attempts": max_attempts, "mode": retry_mode},
                    max_pool_connections=max_pool_connections, connect_timeout=10, read_timeout=60)
    # A session of its own: boto3's default session caches the credentials it first found, for the
    # life of the process (a notebook or a test run would keep stale ones).
    return boto3.session.Session().client("s3", config=config)


class Store:
    """Local paths and ``s3://`` URIs behind one interface (see the module docstring).

    ``s3`` injects a boto3 S3 client; otherwise one is created on first S3 use with
    ``retry_mode``/``max_attempts``/``max_pool_connections``.
    """

    def __init__(self, s3: Any = None, *, retry_mode: str = "adaptive", max_attempts: int = 10,
                 max_pool_connections: int = 64) -> None:
        if retry_mode not in ("adaptive", "standard", "legacy"):
            raise ValueError(f"retry_mode must be adaptive, standard or legacy, got {retry_mode!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self._s3 = _S3(s3) if s3 is not None else None
        self._s3_options = (max_attempts, retry_mode, max_pool_connections)
        self._local = _Local()

    def _backend(self, uri: str) -> _S3 | _Local:
        if is_s3(uri):
            if self._s3 is None:
                self._s3 = _S3(s3_client(*self._s3_options))
            return self._s3
        return self._local

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects under the folder ``prefix`` (keys relative to it), sorted by key."""
        base = folder(prefix)
        return self._backend(base).list(base)

    def read(self, uri: str) -> bytes:
        return self._backend(uri).read(uri)

    def write(self, uri: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        self._backend(uri).write(uri, data, metadata)

    def create(self, uri: str, data: bytes) -> bool:
        """Write ``uri`` only if it does not exist yet (atomically); False if it did."""
        return self._backend(uri).create(uri, data)

    def copy(self, src: str, dst: str, metadata: dict[str, str] | None = None) -> None:
        """Server-side where both ends are on the same backend; otherwise read and write."""
        a, b = self._backend(src), self._backend(dst)
        if a is b:
            a.copy(src, dst, metadata)
        else:
            b.write(dst, a.read(src), metadata)

    def head(self, uri: str) -> dict[str, Any] | None:
        return self._backend(uri).head(uri)

    def exists(self, uri: str) -> bool:
        return self.head(uri) is not None

    def delete(self, uri: str) -> None:
        self._backend(uri).delete(uri)
