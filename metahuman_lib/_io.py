"""Small file helpers shared by every module that writes state: atomic writes and checksums."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from metahuman_lib.errors import StorageError

_STORAGE_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space and run again",
    errno.EDQUOT: "the disk quota is used up: free some space and run again",
    errno.EFBIG: "the file is larger than this system allows: free space or raise the limit, then run again",
    errno.EROFS: "the file system is read-only: remount it writable or use another --root",
    errno.EACCES: "permission denied: make the folder writable for this user or use another --root",
    errno.EPERM: "operation not permitted: make the folder writable for this user or use another --root",
}


def storage_error(path: Path, exc: OSError) -> StorageError:
    """One line naming the path, the cause and what to do (the previous file, if any, is unchanged)."""
    advice = _STORAGE_ADVICE.get(exc.errno or 0, "check the disk and the folder's permissions, then run again")
    return StorageError(f"Cannot write {path}: {exc.strerror or exc}; {advice}. Nothing there was half-written.")


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary handle whose bytes replace ``path`` all at once when the block ends without error.

    The bytes go to a temporary file in the same folder, are fsynced, then renamed over the target;
    the folder is fsynced too so the rename survives a crash. On any error the temporary file goes
    and the target is untouched; a full disk or a read-only folder is a :class:`StorageError`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise storage_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(path, exc) from exc
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a partial one."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (keys in insertion order)."""
    atomic_write_bytes(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NAIVE_UTC) + b"\n")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return orjson.loads(Path(path).read_bytes())


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large weights do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(folder: Path) -> str:
    """One sha256 over every file under ``folder`` (relative path and content), in sorted order."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()
