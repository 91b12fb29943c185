"""SFTP transfers against a real OpenSSH server: checksums both ways, no checkpoints home."""

from __future__ import annotations

import os
import sys

import pytest
from _helpers_runpod import SshServer

from metahuman_lib._io import sha256_file
from metahuman_lib.errors import BackendError
from metahuman_lib.training.transfer import (
    SshConnection,
    SshEndpoint,
    download_verified,
    remote_manifest,
    tree_files,
    upload_files,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    endpoint = SshEndpoint("127.0.0.1", server.port, "root" if os.geteuid() == 0 else os.environ["USER"],
                           server.client_key)
    with SshConnection(endpoint, connect_timeout_s=5, retries=2, retry_delay_s=0.05) as connection:
        yield connection
    server.stop()


def test_upload_then_download_only_final_files(conn, tmp_path):
    local = tmp_path / "local"
    (local / "output" / "adapter").mkdir(parents=True)
    (local / "output" / "adapter" / "adapter_model.safetensors").write_bytes(os.urandom(50_000))
    (local / "output" / "checkpoint-2").mkdir()
    (local / "output" / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    (local / ".scratch").mkdir()
    (local / ".scratch" / "rng_state.pth").write_bytes(b"rng")
    (local / "metrics.json").write_text("{}")
    remote = str(tmp_path / "pod")

    stats = upload_files(conn, tree_files(local, "run"), remote, python=sys.executable)
    assert (stats.files, stats.drops) == (3, 0)  # dot folders are never sent

    manifest = remote_manifest(conn, sys.executable, f"{remote}/run", ["output", "metrics.json", "absent.json"])
    assert sorted(manifest) == ["metrics.json", "output/adapter/adapter_model.safetensors"]
    home = tmp_path / "home"
    download_verified(conn, manifest, f"{remote}/run", home)
    copied = home / "output" / "adapter" / "adapter_model.safetensors"
    assert sha256_file(copied) == sha256_file(local / "output" / "adapter" / "adapter_model.safetensors")
    assert not (home / ".download").exists()


def test_download_refuses_a_checksum_mismatch(conn, tmp_path):
    remote = tmp_path / "pod"
    remote.mkdir()
    (remote / "metrics.json").write_text('{"after": 1}')
    wrong = {"metrics.json": {"sha256": "0" * 64, "bytes": 12}}
    with pytest.raises(BackendError, match=r"Downloaded files do not match the pod's checksums: metrics.json"):
        download_verified(conn, wrong, str(remote), tmp_path / "home")
    assert not (tmp_path / "home" / "metrics.json").exists()


def test_host_key_change_is_refused(conn, tmp_path):
    other = SshConnection(conn.endpoint, host_key="ssh-ed25519 AAAAnotthekey", connect_timeout_s=5, retries=1)
    with pytest.raises(BackendError, match=r"The SSH host key of \[127.0.0.1\]:\d+ changed \(expected ssh-ed25519 AAAAnotthekey..., got"):
        other.check("true", what="probe")
    other.close()
