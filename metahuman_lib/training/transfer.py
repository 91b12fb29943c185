"""Encrypted transfers to and from a pod over SSH/SFTP (paramiko), with sha256 checks and retries.

Why SFTP over "full SSH": RunPod's proxy SSH cannot carry files, and the memories must only travel
over an encrypted channel. Every file is checked by sha256 on both ends: uploads against the local
hash, downloads against a manifest computed on the pod. A dropped connection is re-opened and only
the files not yet verified are sent again.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Self

from metahuman_lib._io import sha256_file
from metahuman_lib.errors import BackendError, MissingExtraError

#: Errors that mean "the connection broke": worth reconnecting and trying again.
_TRANSIENT: tuple[type[BaseException], ...] = (OSError, EOFError, socket.timeout)


def _paramiko() -> Any:
    try:
        import paramiko
    except ImportError as exc:  # pragma: no cover - the cloud extra is part of the test env
        raise MissingExtraError("cloud", "paramiko") from exc
    return paramiko


def _transient_errors() -> tuple[type[BaseException], ...]:
    return (*_TRANSIENT, _paramiko().SSHException)


@dataclass(frozen=True)
class SshEndpoint:
    """Where a pod's SSH server answers and who logs in with which key."""

    host: str
    port: int
    user: str
    key_path: Path


@dataclass(frozen=True)
class CommandResult:
    """Exit status and output of one remote command."""

    rc: int
    stdout: str
    stderr: str


class _PinHostKey:
    """Accept the pod's host key on first contact and refuse any other key afterwards.

    A new pod's key cannot be known in advance (RunPod does not publish it), so the first key is
    recorded in the run folder and every later connection, including a re-attach, must match it.
    """

    def __init__(self, expected: str | None) -> None:
        self.expected = expected
        self.seen: str | None = None

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        presented = f"{key.get_name()} {key.get_base64()}"
        if self.expected is not None and presented != self.expected:
            raise BackendError(
                f"The SSH host key of {hostname} changed (expected {self.expected[:40]}..., got "
                f"{presented[:40]}...). Refusing to send data to it."
            )
        self.seen = presented


class SshConnection:
    """One SSH connection to a pod that re-opens itself after a drop.

    Attributes:
        host_key: the pod's host key as ``"<type> <base64>"`` once connected (record it).
    """

    def __init__(self, endpoint: SshEndpoint, *, host_key: str | None = None,
                 connect_timeout_s: float = 20.0, retries: int = 3, retry_delay_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint
        self.host_key = host_key
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._sleep = sleep
        self._client: Any = None
        self._sftp: Any = None
        self.drops = 0

    # ---------------------------------------------------------------- connection
    def _open(self) -> None:
        paramiko = _paramiko()
        policy = _PinHostKey(self.host_key)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(policy)
        try:
            client.connect(
                self.endpoint.host, port=self.endpoint.port, username=self.endpoint.user,
                key_filename=str(self.endpoint.key_path), look_for_keys=False, allow_agent=False,
                timeout=self.connect_timeout_s, banner_timeout=self.connect_timeout_s,
                auth_timeout=self.connect_timeout_s,
            )
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        transport.set_keepalive(15)
        self._client = client
        self.host_key = self.host_key or policy.seen

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        for handle in (self._sftp, self._client):
            if handle is not None:
                with contextlib.suppress(Exception):  # a broken connection may fail to close
                    handle.close()
        self._client = self._sftp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _alive(self) -> bool:
        if self._client is None:
            return False
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def ensure(self) -> None:
        """Open the connection if it is closed or broken."""
        if not self._alive():
            self.close()
            self._open()

    def retrying(self, action: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` (re-opening the connection first), retrying after connection failures."""
        transient = _transient_errors()
        last: BaseException | None = None
        for attempt in range(1, self.retries + 1):
            try:
                self.ensure()
                return work()
            except transient as exc:
                last = exc
                self.drops += 1
                self.close()
                if attempt < self.retries:
                    self._sleep(self.retry_delay_s)
        raise BackendError(
            f"{action} failed after {self.retries} attempts over SSH to "
            f"{self.endpoint.host}:{self.endpoint.port}: {type(last).__name__}: {last}"
        ) from None

    @property
    def sftp(self) -> Any:
        self.ensure()
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
        return self._sftp

    # ---------------------------------------------------------------- commands
    def run(self, command: str, *, timeout_s: float = 120.0) -> CommandResult:
        """Run a shell command on the pod once (no retry), returning its status and output."""
        self.ensure()
        _stdin, stdout, stderr = self._client.exec_command(command, timeout=timeout_s)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        return CommandResult(stdout.channel.recv_exit_status(), out, err)

    def check(self, command: str, *, what: str, timeout_s: float = 120.0) -> str:
        """Run a command with retries on connection drops; raise when it exits non-zero."""
        result = self.retrying(what, lambda: self.run(command, timeout_s=timeout_s))
        if result.rc != 0:
            detail = (result.stderr or result.stdout).strip()[-800:]
            raise BackendError(f"{what} failed on the pod (exit {result.rc}): {detail}")
        return result.stdout


# --------------------------------------------------------------------------- remote hashing

#: Runs on the pod with only the standard library: sha256 and size of files under a folder,
#: skipping what must never come home (intermediate checkpoints and optimizer states).
_MANIFEST_SCRIPT = r"""
import hashlib, json, os, sys
root, names = sys.argv[1], sys.argv[2:]
skip_dirs = lambda d: d.startswith("checkpoint-") or d.startswith(".") or d == "__pycache__"
skip_files = {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin",
              "scaler.pt"}
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
out = {}
for name in names:
    path = os.path.join(root, name)
    if os.path.isfile(path):
        out[name] = {"sha256": digest(path), "bytes": os.path.getsize(path)}
    elif os.path.isdir(path):
        for d, dirs, files in os.walk(path):
            dirs[:] = sorted(x for x in dirs if not skip_dirs(x))
            for f in sorted(files):
                if f in skip_files or f.startswith("rng_state") or f.startswith("."):
                    continue
                full = os.path.join(d, f)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                out[rel] = {"sha256": digest(full), "bytes": os.path.getsize(full)}
print(json.dumps(out, sort_keys=True))
"""


def _manifest_once(conn: SshConnection, python: str, root: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    command = " ".join([shlex.quote(python), "-c", shlex.quote(_MANIFEST_SCRIPT), shlex.quote(root),
                        *(shlex.quote(n) for n in names)])
    result = conn.run(command, timeout_s=3600)
    if result.rc != 0:
        raise BackendError(f"Computing checksums on the pod failed (exit {result.rc}): "
                           f"{result.stderr.strip()[-400:]}")
    try:
        return json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    except (json.JSONDecodeError, IndexError) as exc:
        raise BackendError(f"The pod returned an unreadable checksum manifest: {result.stdout[-200:]!r}") from exc


def remote_manifest(conn: SshConnection, python: str, root: str, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """sha256 and size of the named files and folders under ``root`` on the pod, computed there.

    Intermediate checkpoints (``checkpoint-*``) and optimizer states are left out, so they can
    never be downloaded.
    """
    names = list(names)
    return conn.retrying("Computing checksums on the pod", lambda: _manifest_once(conn, python, root, names))


# --------------------------------------------------------------------------- upload / download

@dataclass(frozen=True)
class TransferStats:
    """What a transfer moved: files, bytes, and how many connection drops it survived."""

    files: int
    bytes: int
    drops: int
    sent: int = 0


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled, leave=False)


def _exists(sftp: Any, remote_path: str) -> bool:
    try:
        sftp.stat(remote_path)
    except FileNotFoundError:
        return False
    return True


def _mkdirs(sftp: Any, remote_dir: str) -> None:
    path = PurePosixPath(remote_dir)
    for parent in [*reversed(path.parents), path]:
        text = str(parent)
        if text in ("/", "."):
            continue
        try:
            sftp.stat(text)
        except FileNotFoundError:
            sftp.mkdir(text)


def upload_files(conn: SshConnection, files: dict[str, Path], remote_root: str, *, python: str,
                 progress: bool = False) -> TransferStats:
    """Upload ``{remote relative path: local file}`` under ``remote_root`` and verify every sha256.

    Each attempt first asks the pod which files it already holds with the right checksum, so a
    retry after a dropped connection sends only what is missing.
    """
    expected = {rel: sha256_file(path) for rel, path in files.items()}
    total = sum(path.stat().st_size for path in files.values())
    drops_before = conn.drops
    sent: set[str] = set()
    with _progress_bar(total, "upload", progress) as bar:

        def attempt() -> None:
            fresh = conn.drops == drops_before and not _exists(conn.sftp, remote_root)
            present = {} if fresh else _manifest_once(conn, python, remote_root, sorted(files))
            missing = [rel for rel in sorted(files) if present.get(rel, {}).get("sha256") != expected[rel]]
            sent.update(missing)
            _put_all(conn, files, missing, remote_root, bar)

        conn.retrying("Uploading to the pod", attempt)
        present = remote_manifest(conn, python, remote_root, sorted(files))
    bad = [rel for rel in sorted(files) if present.get(rel, {}).get("sha256") != expected[rel]]
    if bad:
        raise BackendError(f"Upload to the pod did not verify: checksums differ for {', '.join(bad[:5])}.")
    return TransferStats(len(files), total, conn.drops - drops_before, len(sent))


def _put_all(conn: SshConnection, files: dict[str, Path], names: list[str], remote_root: str,
             bar: Any) -> None:
    sftp = conn.sftp
    for rel in names:
        target = f"{remote_root.rstrip('/')}/{rel}"
        _mkdirs(sftp, str(PurePosixPath(target).parent))
        sent = [0]

        def advance(done: int, _total: int, sent: list[int] = sent) -> None:
            bar.update(done - sent[0])
            sent[0] = done

        sftp.put(str(files[rel]), target, callback=advance, confirm=True)


def download_verified(conn: SshConnection, manifest: dict[str, dict[str, Any]], remote_root: str,
                      local_root: Path, *, progress: bool = False) -> TransferStats:
    """Download the files of ``manifest`` (computed on the pod) and check each sha256.

    Files land in a staging folder first and move into ``local_root`` only once every checksum
    matched, so a broken download never leaves half an adapter in the run folder. A retry
    fetches only the files not yet verified.
    """
    local_root = Path(local_root)
    staging = local_root / ".download"
    total = sum(int(entry["bytes"]) for entry in manifest.values())
    drops_before = conn.drops

    def unverified() -> list[str]:
        return [rel for rel, entry in sorted(manifest.items()) if not _matches(staging / rel, entry["sha256"])]

    with _progress_bar(total, "download", progress) as bar:
        conn.retrying("Downloading from the pod",
                      lambda: _get_all(conn, unverified(), remote_root, staging, bar))
    bad = unverified()
    if bad:
        raise BackendError(f"Downloaded files do not match the pod's checksums: {', '.join(bad[:5])}.")
    _move_into_place(staging, local_root, manifest)
    return TransferStats(len(manifest), total, conn.drops - drops_before)


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _get_all(conn: SshConnection, names: list[str], remote_root: str, staging: Path, bar: Any) -> None:
    sftp = conn.sftp
    for rel in names:
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        sent = [0]

        def advance(done: int, _total: int, sent: list[int] = sent) -> None:
            bar.update(done - sent[0])
            sent[0] = done

        sftp.get(f"{remote_root.rstrip('/')}/{rel}", str(target), callback=advance)


def _move_into_place(staging: Path, local_root: Path, manifest: dict[str, dict[str, Any]]) -> None:
    import shutil

    for top in sorted({rel.split("/", 1)[0] for rel in manifest}):
        destination = local_root / top
        if destination.is_dir():
            shutil.rmtree(destination)
        elif destination.exists():
            destination.unlink()
        (staging / top).replace(destination)
    shutil.rmtree(staging, ignore_errors=True)


def tree_files(folder: Path, prefix: str) -> dict[str, Path]:
    """``{prefix/relative path: file}`` for every file under ``folder``, skipping caches and dot files."""
    folder = Path(folder)
    return {
        f"{prefix}/{path.relative_to(folder).as_posix()}": path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part.startswith(".") or part == "__pycache__"
                                      for part in path.relative_to(folder).parts)
    }
