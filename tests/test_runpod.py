"""RunPodBackend against real local servers: a GraphQL API answering the runpod SDK, and an
OpenSSH server playing the pod. Nothing of ours is mocked; faults are real (refused creates,
a TCP link that cuts a transfer, a crashing trainer, a SIGINT, a clock that runs past budget).

In every test: the fake API received a terminate for every pod that was created, and the run
folder says what happened.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from _helpers_runpod import FakeRunPodApi, FlakyProxy, SshServer
from metahuman_lib._io import read_json
from metahuman_lib.errors import BackendError
from metahuman_lib.training.backend import get_backend
from metahuman_lib.training.runpod import EVENTS_NAME, RunPodBackend, RunStopped

pytestmark = pytest.mark.slow

API_KEY = "rpa_TESTKEY_5b1f0c9e7d2a4c8b9e3f"
LABEL = "2026-11-23-120000-abcdef"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def fake_api(sshd, monkeypatch):
    api = FakeRunPodApi(api_key=API_KEY, ssh_port=sshd.port).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", api.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    yield api
    api.stop()


@pytest.fixture
def pod_dir(tmp_path):
    return tmp_path / "pod-disk"


def _config(sshd: SshServer, pod_dir: Path, **overrides):
    base = {"ssh_key": str(sshd.client_key), "remote_dir": str(pod_dir), "python": sys.executable,
            "setup_command": "", "trainer_module": "metahuman_lib.training._standin_train",
            "poll_interval_s": 0.1, "retry_delay_s": 0.05, "ready_timeout_s": 5.0,
            "connect_timeout_s": 5.0}
    base.update(overrides)
    return base


def _run_folder(root: Path, label: str = LABEL, **train) -> Path:
    run = root / "profiles" / "demo" / "out" / "fine-tuned-models" / label[:10] / label
    run.mkdir(parents=True)
    (run / "dataset.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    (run / "eval_recent.jsonl").write_text('{"messages": []}\n')
    (run / "train_config.json").write_text(json.dumps({"max_steps": 3, "standin_sleep": 0.05, **train}))
    return run


def _runpod_section(run: Path) -> dict:
    return read_json(run / "manifest.json")["training"]["runpod"]


def _events(run: Path) -> list[str]:
    return [json.loads(line)["event"] for line in (run / EVENTS_NAME).read_text().splitlines()]


def _assert_all_terminated(api: FakeRunPodApi) -> None:
    assert sorted(set(api.terminated_ids)) == sorted(api.created_ids)
    assert api.live_pods() == []


def _assert_trainer_gone(run: Path) -> None:
    pid = _runpod_section(run).get("trainer_pid")
    if pid:
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)


# ------------------------------------------------------------------ success

def test_success_brings_home_only_final_outputs_and_terminates(sshd, fake_api, pod_dir, tmp_path):
    run = _run_folder(tmp_path / "root")
    backend = get_backend("runpod", config=_config(sshd, pod_dir))

    status = backend.run(run, progress=False)

    assert status.state == "succeeded"
    assert (run / "output" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (run / "output" / "checkpoint-1").exists()
    assert {"metrics.json", "train_log.jsonl", "status.json", "effective_config.json"} <= {
        p.name for p in run.iterdir()}
    assert not (run / ".download").exists()
    section = _runpod_section(run)
    assert section["outcome"] == "succeeded" and section["terminated"] is True
    assert section["remote_data"] == "deleted"
    assert not any(pod_dir.iterdir())
    assert section["hourly_usd"] == 0.34 and section["gpu_type"] == "NVIDIA GeForce RTX 4090"
    actual = read_json(run / "manifest.json")["training"]["actual_cost"]
    assert actual["hourly_usd"] == 0.34 and actual["usd"] == pytest.approx(0.34 * actual["billed_s"] / 3600, abs=1e-4)
    assert set(section["downloaded"]) >= {"output/adapter/adapter_model.safetensors", "metrics.json"}
    create = next(m for m in fake_api.mutations if m["op"] == "podFindAndDeployOnDemand")
    assert create["name"] == f"metahuman-demo-{LABEL}"
    assert create["ports"] == "22/tcp" and create["support_public_ip"] is True
    assert fake_api.pods[create["pod_id"]].env["PUBLIC_KEY"] == sshd.client_key.with_suffix(".pub").read_text().strip()
    assert _events(run)[-1] == "pod_terminated"
    _assert_all_terminated(fake_api)


def test_falls_back_from_community_to_secure_then_next_gpu_type(sshd, fake_api, pod_dir, tmp_path):
    fake_api.unavailable = {("NVIDIA GeForce RTX 4090", "COMMUNITY"), ("NVIDIA GeForce RTX 4090", "SECURE"),
                            ("NVIDIA A100 80GB PCIe", "COMMUNITY")}
    run = _run_folder(tmp_path / "root")
    status = RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    assert status.state == "succeeded"
    attempts = [(a["gpu_type"], a["cloud_type"], a["result"]) for a in _runpod_section(run)["attempts"]]
    assert attempts == [
        ("NVIDIA GeForce RTX 4090", "COMMUNITY", "unavailable"),
        ("NVIDIA GeForce RTX 4090", "SECURE", "unavailable"),
        ("NVIDIA A100 80GB PCIe", "COMMUNITY", "unavailable"),
        ("NVIDIA A100 80GB PCIe", "SECURE", "created"),
    ]
    assert _runpod_section(run)["hourly_usd"] == 1.89
    _assert_all_terminated(fake_api)


def test_relaunch_reattaches_to_the_recorded_pod(sshd, fake_api, pod_dir, tmp_path):
    run = _run_folder(tmp_path / "root", max_steps=20, standin_sleep=0.1)
    first = RunPodBackend(_config(sshd, pod_dir)).launch(run)
    assert first.state in {"pending", "running"}

    second = RunPodBackend(_config(sshd, pod_dir))  # a restarted kernel: a fresh backend object
    second.launch(run)
    status = second.wait(run, progress=False)

    assert status.state == "succeeded"
    assert len(fake_api.created_ids) == 1
    assert "reattached" in _events(run)
    _assert_all_terminated(fake_api)


# ------------------------------------------------------------------ faults

def test_pod_creation_fails_everywhere(sshd, fake_api, pod_dir, tmp_path):
    fake_api.unavailable = {("*", "COMMUNITY"), ("*", "SECURE")}
    run = _run_folder(tmp_path / "root")

    with pytest.raises(BackendError, match=r"No RunPod pod could be created \(NVIDIA GeForce RTX 4090 / COMMUNITY: unavailable;"):
        RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    assert fake_api.created_ids == []
    _assert_all_terminated(fake_api)
    assert _runpod_section(run)["outcome"] == "pod_creation_failed"
    assert read_json(run / "status.json")["state"] == "failed"


def test_pod_without_public_ssh_is_terminated(sshd, fake_api, pod_dir, tmp_path):
    fake_api.ready_after_polls = -1
    run = _run_folder(tmp_path / "root")

    with pytest.raises(BackendError, match=r"had no public SSH port after 0 s"):
        RunPodBackend(_config(sshd, pod_dir, ready_timeout_s=0.3)).run(run, progress=False)

    assert len(fake_api.created_ids) == 1
    _assert_all_terminated(fake_api)
    section = _runpod_section(run)
    assert section["outcome"] == "failed" and section["remote_data"] == "no_connection_made"


def test_transfer_cut_midway_is_retried(sshd, fake_api, pod_dir, tmp_path):
    proxy = FlakyProxy(sshd.port, cut_after=60_000, cuts=1).start()
    fake_api.ssh_port = proxy.port
    run = _run_folder(tmp_path / "root")
    (run / "dataset.jsonl").write_bytes(os.urandom(400_000).hex().encode()[:400_000])
    try:
        status = RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)
    finally:
        proxy.stop()

    assert status.state == "succeeded"
    assert proxy.cuts_done == 1
    uploaded = next(json.loads(l) for l in (run / EVENTS_NAME).read_text().splitlines() if '"uploaded"' in l)
    assert uploaded["drops"] == 1
    _assert_all_terminated(fake_api)


def test_transfer_that_keeps_breaking_fails_and_terminates(sshd, fake_api, pod_dir, tmp_path):
    proxy = FlakyProxy(sshd.port, cut_after=60_000, cuts=1000).start()
    fake_api.ssh_port = proxy.port
    run = _run_folder(tmp_path / "root")
    (run / "dataset.jsonl").write_bytes(b"x" * 400_000)
    try:
        with pytest.raises(BackendError, match=r"Uploading to the pod failed after 3 attempts over SSH"):
            RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)
    finally:
        proxy.stop()

    _assert_all_terminated(fake_api)
    section = _runpod_section(run)
    assert section["outcome"] == "failed"
    assert "Uploading to the pod failed" in section["error"]
    assert read_json(run / "status.json")["state"] == "failed"


def test_trainer_crash_is_reported_and_terminated(sshd, fake_api, pod_dir, tmp_path):
    run = _run_folder(tmp_path / "root", standin_fail=True)

    status = RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    assert status.state == "failed" and status.error == "boom"
    assert not (run / "output").exists()
    assert (run / "trainer.log").is_file()
    section = _runpod_section(run)
    assert section["outcome"] == "failed" and section["error"] == "boom"
    _assert_all_terminated(fake_api)


def test_polling_time_out_stops_and_terminates(sshd, fake_api, pod_dir, tmp_path):
    run = _run_folder(tmp_path / "root", max_steps=500, standin_sleep=0.1)

    with pytest.raises(RunStopped, match=r"Timed out after 0.5 s waiting for the trainer"):
        RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False, timeout_s=0.5)

    section = _runpod_section(run)
    assert section["outcome"] == "timed_out"
    assert read_json(run / "status.json")["state"] == "cancelled"
    _assert_trainer_gone(run)
    _assert_all_terminated(fake_api)


def test_interrupt_during_training_terminates(sshd, fake_api, pod_dir, tmp_path):
    run = _run_folder(tmp_path / "root", max_steps=500, standin_sleep=0.1)
    remote_status = pod_dir / LABEL / "run" / "status.json"

    def interrupt_once_training() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not remote_status.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_training, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    section = _runpod_section(run)
    assert section["outcome"] == "interrupted" and section["terminated"] is True
    assert section["remote_data"] == "deleted"
    _assert_trainer_gone(run)
    _assert_all_terminated(fake_api)


@pytest.mark.parametrize("limits, message", [
    ({"budget_hours": 0.002}, r"Budget exceeded: the pod has run 0\.00\d\d h, over the 0.002 h cap"),
    ({"budget_usd": 8.0}, r"Budget exceeded: \$\d+\.\d\d spent, over the \$8.00 cap"),
])
def test_budget_exceeded_stops_and_terminates(sshd, fake_api, pod_dir, tmp_path, limits, message):
    fake_api.cost_per_hr = 3600.0  # a dollar a second, so a small budget runs out mid-training
    run = _run_folder(tmp_path / "root", max_steps=500, standin_sleep=0.1)

    with pytest.raises(RunStopped, match=message):
        RunPodBackend(_config(sshd, pod_dir, **limits)).run(run, progress=False)

    section = _runpod_section(run)
    assert section["outcome"] == "budget_exceeded"
    assert "trainer_started" in _events(run)
    assert section["cost_usd"] > 0
    _assert_trainer_gone(run)
    _assert_all_terminated(fake_api)


def test_terminate_is_retried_when_the_api_fails(sshd, fake_api, pod_dir, tmp_path):
    fake_api.terminate_failures = 2
    run = _run_folder(tmp_path / "root")

    status = RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    assert status.state == "succeeded"
    assert len([m for m in fake_api.mutations if m["op"] == "podTerminate"]) == 3
    _assert_all_terminated(fake_api)


# ------------------------------------------------------------------ secrets

def test_api_key_never_leaves_memory(sshd, fake_api, pod_dir, tmp_path, capsys, caplog):
    caplog.set_level("DEBUG")
    ok = _run_folder(tmp_path / "root")
    bad = _run_folder(tmp_path / "root", label="2026-11-23-130000-abcdef", standin_fail=True)
    backend = RunPodBackend(_config(sshd, pod_dir))
    backend.run(ok, progress=True)
    backend.run(bad, progress=True)
    fake_api.unavailable = {("*", "COMMUNITY"), ("*", "SECURE")}
    with pytest.raises(BackendError) as failure:
        backend.run(_run_folder(tmp_path / "root", label="2026-11-23-140000-abcdef"), progress=True)

    captured = capsys.readouterr()
    texts = [captured.out, captured.err, caplog.text, str(failure.value), repr(backend)]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    texts += [json.dumps(pod.env) for pod in fake_api.pods.values()]
    texts += [m["query"] for m in fake_api.mutations if "query" in m]
    assert all(API_KEY not in text for text in texts)
    assert len(texts) > 20
    _assert_all_terminated(fake_api)
