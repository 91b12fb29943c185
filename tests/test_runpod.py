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
from dataclasses import replace
from pathlib import Path

import pytest
from _helpers_runpod import FakeRunPodApi, FlakyProxy, SshServer
from _helpers_training import hand_samples, tiny_model

from metahuman_lib._io import read_json, sha256_tree
from metahuman_lib.errors import BackendError
from metahuman_lib.runfolder import read_manifest, update_manifest
from metahuman_lib.samples import write_samples_jsonl
from metahuman_lib.training.backend import get_backend
from metahuman_lib.training.config import (
    ParentRef,
    TrainConfig,
    read_train_config,
    write_train_config,
)
from metahuman_lib.training.modeling import weights_sha256
from metahuman_lib.training.runpod import EVENTS_NAME, RunPodBackend, RunStopped

pytestmark = pytest.mark.slow

API_KEY = "rpa_TESTKEY_5b1f0c9e7d2a4c8b9e3f"
LABEL = "2026-11-23-120000-abcdef"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The session's tiny Qwen2-style model and demo samples: the real trainer runs in seconds."""
    return tiny_model(tmp_path_factory), hand_samples(48)


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
            "setup_command": "", "poll_interval_s": 0.2, "retry_delay_s": 0.05, "ready_timeout_s": 5.0,
            "connect_timeout_s": 5.0}
    base.update(overrides)
    return base


def _run_folder(root: Path, tiny, label: str = LABEL, *, long: bool = False, parent=None,
                dataset: str | None = None, method: str = "lora") -> Path:
    """A prepared run folder: dataset, eval sets and train_config.json for the tiny model."""
    model, samples = tiny
    run = root / "profiles" / "demo" / "out" / "fine-tuned-models" / label[:10] / label
    run.mkdir(parents=True)
    write_samples_jsonl(samples.iloc[:32], run / "dataset.jsonl")
    write_samples_jsonl(samples.iloc[32:40], run / "eval_recent.jsonl")
    write_samples_jsonl(samples.iloc[40:], run / "eval_old.jsonl")
    if dataset is not None:
        (run / "dataset.jsonl").write_text(dataset)
    config = TrainConfig(base_model=str(model), parent=parent, method=method, batch_size=4, grad_accum=1,
                         epochs=1000 if long else 1, max_steps=100_000 if long else 3,
                         max_seq_len=128, eval_batch_size=8, eval_train_samples=4,
                         checkpoint_every_steps=1000)
    write_train_config(run, config)
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


def _assert_key_absent(api: FakeRunPodApi, folder: Path, *texts: str) -> None:
    """The API key reached the API (in the header) and nowhere else: no file, output or log."""
    assert api.requests_seen, "the SDK never called the fake API"
    everything = list(texts)
    everything += [p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()]
    everything += [json.dumps(pod.env) for pod in api.pods.values()]
    everything += [request["body"] for request in api.requests_seen]
    assert len(everything) > 10
    assert [text[:80] for text in everything if API_KEY in text] == []


# ------------------------------------------------------------------ success

def test_two_runs_reattach_then_build_on_the_first_adapter(sshd, fake_api, pod_dir, tmp_path, tiny,
                                                           capsys, caplog):
    caplog.set_level("DEBUG")
    fake_api.unavailable = {("NVIDIA GeForce RTX 4090", "COMMUNITY"), ("NVIDIA GeForce RTX 4090", "SECURE"),
                            ("NVIDIA A100 80GB PCIe", "COMMUNITY")}
    first = _run_folder(tmp_path / "root", tiny)

    launched = get_backend("runpod", config=_config(sshd, pod_dir)).launch(first)
    assert launched.state in {"pending", "running"}
    again = RunPodBackend(_config(sshd, pod_dir))  # a restarted kernel: a fresh backend object
    again.launch(first)
    status = again.wait(first, progress=True)

    assert status.state == "succeeded"
    assert len(fake_api.created_ids) == 1 and "reattached" in _events(first)
    assert (first / "output" / "adapter" / "adapter_model.safetensors").is_file()
    assert {"metrics.json", "train_log.jsonl", "status.json", "effective_config.json"} <= {
        p.name for p in first.iterdir()}
    assert not list(first.rglob("checkpoint-*")) and not (first / ".download").exists()
    assert not (first / ".scratch").exists()
    assert not any(pod_dir.iterdir()), "the person's data stayed on the pod"
    section = _runpod_section(first)
    assert section["outcome"] == "succeeded" and section["terminated"] is True
    assert section["remote_data"] == "deleted"
    assert [(a["gpu_type"], a["cloud_type"], a["result"]) for a in section["attempts"]] == [
        ("NVIDIA GeForce RTX 4090", "COMMUNITY", "unavailable"),
        ("NVIDIA GeForce RTX 4090", "SECURE", "unavailable"),
        ("NVIDIA A100 80GB PCIe", "COMMUNITY", "unavailable"),
        ("NVIDIA A100 80GB PCIe", "SECURE", "created"),
    ]
    manifest = read_json(first / "manifest.json")
    actual = manifest["training"]["actual_cost"]
    assert actual["hourly_usd"] == 1.89 and actual["usd"] == pytest.approx(1.89 * actual["billed_s"] / 3600, abs=1e-4)
    assert manifest["training"]["output_weights_sha256"] == weights_sha256(first / "output" / "adapter")
    assert manifest["training"]["output_sha256"] == sha256_tree(first / "output" / "adapter")
    create = next(m for m in fake_api.mutations if m.get("pod_id"))
    mark = manifest["training"]["runpod"]["run_mark"]
    assert create["name"] == f"metahuman-demo-{LABEL}-wb{mark}" and len(mark) == 12
    assert fake_api.pods[create["pod_id"]].env["METAHUMAN_WORKBENCH_RUN"] == mark
    assert create["ports"] == "22/tcp" and create["support_public_ip"] is True
    assert fake_api.pods[create["pod_id"]].env["PUBLIC_KEY"] == Path(f"{sshd.client_key}.pub").read_text().strip()

    parent_sha = weights_sha256(first / "output" / "adapter")
    second = _run_folder(tmp_path / "root", tiny, label="2026-12-21-120000-abcdef",
                         parent=ParentRef(version=1, path=str(first / "output" / "adapter"),
                                          kind="adapter", sha256=parent_sha))
    assert RunPodBackend(_config(sshd, pod_dir)).run(second, progress=False).state == "succeeded"

    loaded = read_json(second / "manifest.json")["training"]["loaded"]
    assert loaded["parent"]["weights_sha256"] == parent_sha
    assert loaded["adapter"] == "continued_parent_adapter"
    assert _events(second)[-1] == "pod_terminated"
    _assert_all_terminated(fake_api)
    captured = capsys.readouterr()
    _assert_key_absent(fake_api, tmp_path, captured.out, captured.err, caplog.text, repr(again))


# ------------------------------------------------------------------ faults

def test_pod_creation_fails_everywhere(sshd, fake_api, pod_dir, tmp_path, tiny, capsys):
    fake_api.unavailable = {("*", "COMMUNITY"), ("*", "SECURE")}
    run = _run_folder(tmp_path / "root", tiny)

    with pytest.raises(BackendError, match=r"No RunPod pod could be created \(NVIDIA GeForce RTX 4090 / "
                                           r"COMMUNITY: unavailable;") as failure:
        RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    assert fake_api.created_ids == []
    _assert_all_terminated(fake_api)
    assert _runpod_section(run)["outcome"] == "pod_creation_failed"
    assert read_json(run / "status.json")["state"] == "failed"
    _assert_key_absent(fake_api, tmp_path, str(failure.value), *capsys.readouterr())


def test_estimate_over_budget_rents_no_pod(sshd, fake_api, pod_dir, tmp_path, tiny):
    run = _run_folder(tmp_path / "root", tiny)
    estimate = {"gpu": "NVIDIA A100 80GB PCIe", "hours": 6.5, "dollars": 12.29}  # cost.CostEstimate.as_dict()
    update_manifest(run, lambda m: m.setdefault("training", {}).update(estimate=estimate))

    with pytest.raises(BackendError, match=r"The run is projected at 6.50 h and \$4.48 on NVIDIA GeForce RTX 4090, "
                                           r"the cheapest GPU type that fits: over the budget \(6.50 h > "
                                           r"runpod.budget_hours 4 h\)\. No pod was rented\."):
        RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    assert fake_api.created_ids == [] and fake_api.mutations == []
    assert _runpod_section(run)["outcome"] == "refused_before_renting"
    assert read_json(run / "status.json")["error"].startswith("The run is projected at 6.50 h")


def test_pod_without_public_ssh_is_terminated(sshd, fake_api, pod_dir, tmp_path, tiny):
    fake_api.ready_after_polls = -1
    run = _run_folder(tmp_path / "root", tiny)

    with pytest.raises(BackendError, match=r"had no public SSH port after 0 s"):
        RunPodBackend(_config(sshd, pod_dir, ready_timeout_s=0.3)).run(run, progress=False)

    assert len(fake_api.created_ids) == 1
    _assert_all_terminated(fake_api)
    section = _runpod_section(run)
    assert section["outcome"] == "failed" and section["remote_data"] == "no_connection_made"


def test_relaunch_after_a_failure_or_a_vanished_pod_rents_a_new_one(sshd, fake_api, pod_dir, tmp_path, tiny):
    fake_api.ready_after_polls = -1
    run = _run_folder(tmp_path / "root", tiny)
    backend = RunPodBackend(_config(sshd, pod_dir, ready_timeout_s=0.1))
    assert backend.poll(run).state == "pending"
    for _ in range(2):
        with pytest.raises(BackendError, match=r"had no public SSH port"):
            backend.run(run, progress=False)
    assert [p["pod_id"] for p in _runpod_section(run)["previous_pods"]] == ["pod0001"]

    update_manifest(run, lambda m: m["training"]["runpod"].update(pod_id="pod-gone", terminated=False))
    with pytest.raises(BackendError, match=r"had no public SSH port"):
        backend.run(run, progress=False)

    assert "pod_vanished" in _events(run)
    assert [p["state"] for p in _runpod_section(run)["previous_pods"]] == ["failed", "lost"]
    assert fake_api.created_ids == ["pod0001", "pod0002", "pod0003"]
    _assert_all_terminated(fake_api)


def test_transfer_cut_midway_is_retried_then_cancel_terminates(sshd, fake_api, pod_dir, tmp_path, tiny):
    proxy = FlakyProxy(sshd.port, cut_after=150_000, cuts=1).start()
    fake_api.ssh_port = proxy.port
    run = _run_folder(tmp_path / "root", tiny, long=True)
    backend = RunPodBackend(_config(sshd, pod_dir))
    try:
        assert backend.launch(run).state in {"pending", "running"}
        backend.cancel(run)
    finally:
        proxy.stop()

    assert proxy.cuts_done == 1
    uploaded = next(json.loads(line) for line in (run / EVENTS_NAME).read_text().splitlines()
                    if '"uploaded"' in line)
    assert uploaded["drops"] == 1
    section = _runpod_section(run)
    assert section["outcome"] == "cancelled" and section["remote_data"] == "deleted"
    assert read_json(run / "status.json")["state"] == "cancelled"
    _assert_trainer_gone(run)
    _assert_all_terminated(fake_api)


def test_transfer_that_keeps_breaking_fails_and_terminates(sshd, fake_api, pod_dir, tmp_path, tiny):
    proxy = FlakyProxy(sshd.port, cut_after=150_000, cuts=1000).start()
    fake_api.ssh_port = proxy.port
    run = _run_folder(tmp_path / "root", tiny)
    try:
        with pytest.raises(BackendError, match=r"Uploading to the pod failed after 3 attempts over SSH"):
            RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)
    finally:
        proxy.stop()

    _assert_all_terminated(fake_api)
    section = _runpod_section(run)
    assert section["outcome"] == "failed"
    assert "Uploading to the pod failed" in section["error"]
    assert section["remote_data"] == "deleted"
    assert read_json(run / "status.json")["state"] == "failed"


def test_trainer_crash_is_reported_and_terminated(sshd, fake_api, pod_dir, tmp_path, tiny, capsys):
    no_answers = json.dumps({"messages": [{"role": "user", "content": "hello?"}], "metadata": {}}) + "\n"
    run = _run_folder(tmp_path / "root", tiny, dataset=no_answers)

    status = RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    assert status.state == "failed"
    assert status.error.startswith("ConfigError: No trainable sample in")
    assert not (run / "output").exists()
    assert "No trainable sample" in (run / "trainer.log").read_text()
    section = _runpod_section(run)
    assert section["outcome"] == "failed" and section["error"] == status.error
    assert section["remote_data"] == "deleted"
    _assert_all_terminated(fake_api)
    _assert_key_absent(fake_api, tmp_path, *capsys.readouterr())


def test_polling_time_out_stops_and_terminates(sshd, fake_api, pod_dir, tmp_path, tiny):
    run = _run_folder(tmp_path / "root", tiny, long=True)

    with pytest.raises(RunStopped, match=r"Timed out after 1 s waiting for the trainer"):
        RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False, timeout_s=1.0)

    section = _runpod_section(run)
    assert section["outcome"] == "timed_out" and section["remote_data"] == "deleted"
    assert read_json(run / "status.json")["state"] == "cancelled"
    _assert_trainer_gone(run)
    _assert_all_terminated(fake_api)


def test_interrupt_during_training_terminates(sshd, fake_api, pod_dir, tmp_path, tiny, ctrl_c):
    run = _run_folder(tmp_path / "root", tiny, long=True)
    remote_status = pod_dir / LABEL / "run" / "status.json"

    def interrupt_once_training() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not remote_status.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_training, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        RunPodBackend(_config(sshd, pod_dir)).run(run, progress=False)

    section = _runpod_section(run)
    assert section["outcome"] == "interrupted" and section["terminated"] is True
    assert section["remote_data"] == "deleted"
    assert read_json(run / "status.json")["state"] == "cancelled"
    _assert_trainer_gone(run)
    _assert_all_terminated(fake_api)


@pytest.mark.parametrize("limits, message", [
    ({"budget_hours": 0.003, "budget_usd": 1000.0}, r"Budget exceeded: the pod has run 0\.00\d\d h, over the 0.003 h cap"),
    ({"budget_usd": 11.0}, r"Budget exceeded: \$\d+\.\d\d spent, over the \$11.00 cap"),
])
def test_budget_exceeded_stops_and_terminates(sshd, fake_api, pod_dir, tmp_path, tiny, limits, message):
    fake_api.cost_per_hr = 3600.0  # a dollar a second, so a small budget runs out mid-training
    run = _run_folder(tmp_path / "root", tiny, long=True)
    # the projection fits the budget, so a pod is rented; the run then overruns it
    update_manifest(run, lambda m: m.setdefault("training", {}).update(estimate={"hours": 0.001}))

    with pytest.raises(RunStopped, match=message):
        RunPodBackend(_config(sshd, pod_dir, **limits)).run(run, progress=False)

    section = _runpod_section(run)
    assert section["outcome"] == "budget_exceeded"
    assert "trainer_started" in _events(run)
    assert section["cost_usd"] >= 10.0 and section["hourly_usd"] == 3600.0
    _assert_trainer_gone(run)
    _assert_all_terminated(fake_api)


def test_terminate_is_retried_when_the_api_fails(sshd, fake_api, pod_dir, tmp_path, tiny):
    fake_api.terminate_failures = 2
    fake_api.ready_after_polls = -1
    run = _run_folder(tmp_path / "root", tiny)

    with pytest.raises(BackendError, match=r"had no public SSH port"):
        RunPodBackend(_config(sshd, pod_dir, ready_timeout_s=0.1)).run(run, progress=False)

    assert len([m for m in fake_api.mutations if m["op"] == "podTerminate"]) == 3
    _assert_all_terminated(fake_api)
    assert _runpod_section(run)["terminated"] is True


def test_terminate_that_never_works_says_how_to_reap(sshd, fake_api, pod_dir, tmp_path, tiny):
    fake_api.terminate_failures = 100
    fake_api.ready_after_polls = -1
    run = _run_folder(tmp_path / "root", tiny)

    with pytest.raises(BackendError, match=r"Could not terminate pod pod0001 .* run `metahuman pods reap`"):
        RunPodBackend(_config(sshd, pod_dir, ready_timeout_s=0.1)).run(run, progress=False)

    section = _runpod_section(run)
    assert section["terminated"] is False and "Could not terminate" in section["terminate_error"]
    assert "terminate_failed" in _events(run)


def test_full_fine_tune_keeps_the_checkpoint_on_the_network_volume(sshd, fake_api, pod_dir, tmp_path, tiny):
    volume = tmp_path / "volume"
    config = _config(sshd, pod_dir, network_volume_id="vol1", volume_mount_path=str(volume))
    first = _run_folder(tmp_path / "root", tiny, method="full")
    assert RunPodBackend(config).run(first, progress=False).state == "succeeded"

    cached = volume / "metahuman" / "models" / sha256_tree(first / "output" / "model")
    assert (cached / "model.safetensors").is_file()
    create = next(m for m in fake_api.mutations if m.get("pod_id"))
    assert create["network_volume_id"] == "vol1" and 'dataCenterId: "EU-RO-1"' in create["query"]

    second = _run_folder(tmp_path / "root", tiny, label="2026-12-21-120000-abcdef", long=True, method="full",
                         parent=ParentRef(version=1, path=str(first / "output" / "model"), kind="model"))
    backend = RunPodBackend(config)
    backend.launch(second)
    backend.cancel(second)

    on_volume = next(json.loads(line) for line in (second / EVENTS_NAME).read_text().splitlines()
                     if '"parent_on_volume"' in line)
    assert on_volume["path"] == str(cached) and on_volume["files"] > 2 and on_volume["sent"] == 0
    assert sorted(p.name for p in volume.rglob("dataset.jsonl")) == []
    assert cached.is_dir() and not any(pod_dir.iterdir())
    _assert_all_terminated(fake_api)


def test_the_budget_check_projects_the_run_when_none_is_recorded(sshd, fake_api, pod_dir, tmp_path, tiny):
    """Without a recorded estimate the cost model projects one, records it, and checks the budget."""
    run = _run_folder(tmp_path / "root", tiny)
    write_train_config(run, replace(read_train_config(run), base_model="Qwen/Qwen3-14B"))  # a big model's hours
    config = _config(sshd, pod_dir, budget_hours=0.001)

    with pytest.raises(BackendError, match=r"The run is projected at \d+\.\d\d h and \$\d+\.\d\d on NVIDIA A100 "
                                           r"80GB PCIe, the cheapest GPU type that fits: over the budget \(\d+\.\d\d h > "
                                           r"runpod.budget_hours 0.001 h\)"):
        RunPodBackend(config).run(run, progress=False)

    estimate = read_manifest(run)["training"]["estimate"]  # the 4090 cannot hold 14B: the A100 is planned
    assert estimate["gpu"] == "NVIDIA A100 80GB PCIe" and estimate["hours"] > 0.001
    assert fake_api.created_ids == []


# ------------------------------------------------------------------ plan before renting (issue 13)

def _qwen3_14b_run(root: Path, tiny, runpod_block: dict) -> Path:
    """A Qwen/Qwen3-14B LoRA run folder whose parameter set carries its own ``runpod:`` block."""
    run = _run_folder(root, tiny)
    write_train_config(run, TrainConfig(base_model="Qwen/Qwen3-14B", method="lora", max_seq_len=2048))
    (run / "parameters.json").write_text(json.dumps({"name": "monthly", "blocks": {"runpod": runpod_block}}))
    return run


def test_a_14b_lora_with_only_a_4090_is_refused_on_memory_before_any_pod(sshd, fake_api, pod_dir, tmp_path, tiny):
    block = _config(sshd, pod_dir, gpu_types=["NVIDIA GeForce RTX 4090"])
    run = _qwen3_14b_run(tmp_path / "root", tiny, block)

    with pytest.raises(BackendError, match=r"Qwen/Qwen3-14B \(lora, adamw, 2048 tokens\) needs \d+\.\d GB .*"
                                           r"NVIDIA GeForce RTX 4090 \(24 GB\).*smallest GPU that would do is "
                                           r"NVIDIA L40S \(48 GB\)"):
        get_backend("runpod").launch(run)  # no config given: the run's own block decides

    assert fake_api.mutations == [] and fake_api.created_ids == []
    assert _runpod_section(run)["outcome"] == "refused_before_renting"
    assert read_json(run / "status.json")["state"] == "failed"


def test_a_14b_lora_over_the_dollar_budget_is_refused_before_renting(sshd, fake_api, pod_dir, tmp_path, tiny):
    block = _config(sshd, pod_dir, gpu_types=["NVIDIA GeForce RTX 4090", "NVIDIA A100 80GB PCIe"], budget_usd=0.01)
    run = _qwen3_14b_run(tmp_path / "root", tiny, block)

    with pytest.raises(BackendError, match=r"The run is projected at \d+\.\d\d h and \$\d+\.\d\d on NVIDIA A100 "
                                           r"80GB PCIe.*> runpod.budget_usd \$0.01\)\. No pod was rented"):
        get_backend("runpod").launch(run)
    assert fake_api.mutations == []


def test_a_14b_lora_rents_the_a100_that_fits_never_the_4090(sshd, fake_api, pod_dir, tmp_path, tiny):
    block = _config(sshd, pod_dir, gpu_types=["NVIDIA GeForce RTX 4090", "NVIDIA A100 80GB PCIe"],
                    budget_usd=50.0, setup_command="echo {pins} > setup.txt; exit 3")
    run = _qwen3_14b_run(tmp_path / "root", tiny, block)

    with pytest.raises(BackendError, match="Installing the trainer's dependencies"):
        get_backend("runpod").run(run, progress=False)

    creates = [m for m in fake_api.mutations if m.get("gpu_type")]
    assert [m["gpu_type"] for m in creates] == ["NVIDIA A100 80GB PCIe"]
    section = _runpod_section(run)
    assert section["gpu_order"] == ["NVIDIA A100 80GB PCIe"]
    planned = {row["gpu"]: row for row in section["memory_plan"]}
    assert planned["NVIDIA GeForce RTX 4090"]["fits"] is False and planned["NVIDIA A100 80GB PCIe"]["fits"] is True
    _assert_all_terminated(fake_api)


def test_the_pod_installs_exactly_the_recorded_versions(sshd, fake_api, pod_dir, tmp_path, tiny):
    from metahuman_lib.training.runpod import setup_command
    from metahuman_lib.training.runpod_config import DEFAULT_IMAGE, RunPodConfig
    from metahuman_lib.training.software import TRAINING_PACKAGES, local_versions

    run = _run_folder(tmp_path / "root", tiny)
    versions = local_versions()
    update_manifest(run, lambda m: m.setdefault("training", {}).update(software=versions))
    command = setup_command(RunPodConfig(python="python3"), run)
    assert command.startswith("python3 -m pip install --quiet --disable-pip-version-check ")
    import shlex

    pins = shlex.split(command.split("--disable-pip-version-check ")[1])
    assert sorted(pins) == sorted(f"{name}=={version}" for name, version in versions.items())
    assert {"transformers", "peft", "accelerate", "tokenizers"} <= set(versions)
    assert not any(">" in pin or "<" in pin for pin in pins)
    assert set(versions) >= {name for name in TRAINING_PACKAGES if name in ("transformers", "peft")}
    assert "cu1281-torch280" in DEFAULT_IMAGE  # CUDA 12.8, torch 2.8: new enough for Qwen3.5 and Gemma 3


def test_the_trainer_refuses_software_that_is_not_the_recorded_one(tmp_path, tiny):
    from metahuman_lib.training import train

    run = _run_folder(tmp_path / "root", tiny)
    update_manifest(run, lambda m: m.setdefault("training", {}).update(software={"transformers": "4.0.0"}))
    with pytest.raises(Exception, match=r"transformers \S+ \(recorded 4\.0\.0\).*pip install transformers==4\.0\.0"):
        train.run(run)
    assert "recorded 4.0.0" in read_json(run / "status.json")["error"]
