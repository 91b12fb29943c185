"""Pod lifecycle helpers and ``metahuman pods list|reap`` against the local fake RunPod API."""

from __future__ import annotations

import pytest
from _helpers_runpod import FakeRunPodApi

from metahuman_lib.cli import main
from metahuman_lib.errors import BackendError
from metahuman_lib.runfolder import update_manifest
from metahuman_lib.training.pods import (
    ApiKey,
    PodApi,
    create_pod_with_fallback,
    find_claims,
    plan_reap,
    pod_name,
    resolve_api_key,
)
from metahuman_lib.training.runpod_config import RunPodConfig

API_KEY = "rpa_PODSKEY_0f9e8d7c6b5a"


@pytest.fixture
def fake_api(monkeypatch):
    api = FakeRunPodApi(api_key=API_KEY, ssh_port=22).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", api.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    yield api
    api.stop()


def _claim(root, user, label, pod_id, state, terminated, mark, previous=()):
    run = root / "profiles" / user / "out" / "fine-tuned-models" / label[:10] / label

    def change(manifest):
        manifest.setdefault("training", {})["runpod"] = {"pod_id": pod_id, "state": state, "run_mark": mark,
                                                         "terminated": terminated, "previous_pods": list(previous)}

    update_manifest(run, change)
    return run


# ------------------------------------------------------------------ key

def test_api_key_from_environment_first(tmp_path):
    stored = tmp_path / "config.toml"
    stored.write_text('[default]\napi_key = "from-file"\n')
    key = resolve_api_key({"RUNPOD_API_KEY": "from-env"}, stored)
    assert key.reveal() == "from-env"
    assert repr(key) == str(key) == f"{key}" == "ApiKey(***)"


def test_api_key_from_the_sdk_credentials_file(tmp_path):
    stored = tmp_path / "config.toml"
    stored.write_text('[default]\napi_key = "from-file"\n')
    assert resolve_api_key({}, stored).reveal() == "from-file"


@pytest.mark.parametrize("content, message", [
    (None, r"No RunPod API key: set RUNPOD_API_KEY in the environment, or run `runpod config`"),
    ("[other]\napi_key = 'x'\n", r"No RunPod API key: set RUNPOD_API_KEY"),
    ("not toml [", r"RunPod credentials file .*config.toml is not valid TOML"),
])
def test_api_key_missing_or_unreadable(tmp_path, content, message):
    stored = tmp_path / "config.toml"
    if content is not None:
        stored.write_text(content)
    with pytest.raises(BackendError, match=message):
        resolve_api_key({}, stored)


def test_api_errors_never_carry_the_key(fake_api):
    fake_api.api_key = "another-key"  # the API now refuses ours
    with pytest.raises(BackendError, match=r"RunPod API call 'get_pods' failed: AuthenticationError") as failure:
        PodApi(ApiKey(API_KEY)).list()
    assert API_KEY not in str(failure.value)


# ------------------------------------------------------------------ names, create

@pytest.mark.parametrize("parts, expected", [
    (("metahuman", "greggles", "2025-12-03-182930-b19860"), "metahuman-greggles-2025-12-03-182930-b19860"),
    (("metahuman", 'a"b c', "x"), "metahuman-a-b-c-x"),
    (("metahuman", "greggles", "2025-12-03-182930-b19860", "0123456789ab"),
     "metahuman-greggles-2025-12-03-182930-b19860-wb0123456789ab"),
])
def test_pod_name(parts, expected):
    assert pod_name(*parts) == expected


def test_price_cap_skips_expensive_gpu_types(fake_api):
    config = RunPodConfig(gpu_types=("NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe"), max_hourly_usd=1.5)
    created = []
    pod, attempts = create_pod_with_fallback(PodApi(ApiKey(API_KEY)), config, "metahuman-u-r", {},
                                             on_created=lambda pod, gpu, cloud: created.append(pod.id))
    assert [(a.gpu_type, a.cloud_type, a.result) for a in attempts] == [
        ("NVIDIA H100 80GB HBM3", "COMMUNITY", "over_max_price"),
        ("NVIDIA H100 80GB HBM3", "SECURE", "over_max_price"),
        ("NVIDIA A100 80GB PCIe", "COMMUNITY", "created"),
    ]
    assert created == [pod.id]


def test_unknown_gpu_type_is_skipped(fake_api):
    config = RunPodConfig(gpu_types=("NVIDIA GTX 9000", "NVIDIA A100 80GB PCIe"), cloud_types=("SECURE",))
    pod, attempts = create_pod_with_fallback(PodApi(ApiKey(API_KEY)), config, "metahuman-u-r", {},
                                             on_created=lambda *_: None)
    assert [a.result for a in attempts] == ["unknown_gpu_type", "created"]
    assert fake_api.pods[pod.id].cloud_type == "SECURE"


# ------------------------------------------------------------------ reap

def _our_pods(fake_api):
    """An orphan whose run moved on, a finished run's pod, an active run's pod (marked in the name or
    only in the environment), a marked pod no run folder knows, and MetaHuman OS's own server pod."""
    moved = fake_api.add_pod("metahuman-demo-2026-01-01-000000-aaaaaa-wb0000000000a1")
    finished = fake_api.add_pod("metahuman-demo-2026-01-02-000000-bbbbbb-wb0000000000b2")
    active = fake_api.add_pod("metahuman-demo-2026-01-03-000000-cccccc",
                              env={"METAHUMAN_WORKBENCH_RUN": "0000000000c3"})
    stranger = fake_api.add_pod("metahuman-demo-2026-01-04-000000-dddddd-wb0000000000d4")
    server = fake_api.add_pod("metahuman-greggles-server")
    return moved, finished, active, stranger, server


def _claims(root, moved, finished, active):
    _claim(root, "demo", "2026-01-01-000000-aaaaaa", "pod-new", "running", False, "0000000000e5",
           previous=[{"pod_id": moved.id, "run_mark": "0000000000a1", "state": "lost", "terminated": False}])
    _claim(root, "demo", "2026-01-02-000000-bbbbbb", finished.id, "succeeded", False, "0000000000b2")
    return _claim(root, "demo", "2026-01-03-000000-cccccc", active.id, "running", False, "0000000000c3")


def test_reap_takes_only_pods_that_carry_our_recorded_mark(fake_api, tmp_path):
    moved, finished, active, stranger, server = _our_pods(fake_api)
    _claims(tmp_path, moved, finished, active)

    pods = PodApi(ApiKey(API_KEY)).list()
    plan = plan_reap(pods, find_claims(tmp_path), include_active=False)

    assert [(d.pod.id, d.action, d.reason) for d in plan] == [
        (moved.id, "terminate", "run_moved_to_another_pod"),
        (finished.id, "terminate", "run_finished_succeeded"),
        (active.id, "keep", "claimed_by_active_run"),
        (stranger.id, "not_ours", "its mark is in no run folder under this root"),
        (server.id, "not_ours", "no workbench mark"),
    ]
    plan_all = plan_reap(pods, find_claims(tmp_path), include_active=True)
    assert [d.action for d in plan_all] == ["terminate"] * 3 + ["not_ours"] * 2


def test_cli_list_and_reap(fake_api, tmp_path, capsys):
    moved, finished, active, stranger, server = _our_pods(fake_api)
    run = _claims(tmp_path, moved, finished, active)

    assert main(["pods", "list", "--root", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 5
    assert listed[2].startswith(f"{active.id}  {active.name}  RUNNING  NVIDIA A100 80GB PCIe  $1.19/h  up 0.00 h  "
                                "$0.00  ")
    assert listed[2].endswith(f"{run} (running)")
    assert listed[4].endswith("$1.19/h  up 0.00 h  $0.00  not ours (no workbench mark)")

    assert main(["pods", "reap", "--root", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"would reap {moved.id}  {moved.name}  (run_moved_to_another_pod)",
        f"would reap {finished.id}  {finished.name}  (run_finished_succeeded)",
        f"keep       {active.id}  {active.name}  (claimed_by_active_run)",
        f"not ours   {stranger.id}  {stranger.name}  (its mark is in no run folder under this root; left alone)",
        f"not ours   {server.id}  {server.name}  (no workbench mark; left alone)",
    ]
    assert fake_api.terminated_ids == []

    assert main(["pods", "reap", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"terminated {moved.id}  {moved.name}  (run_moved_to_another_pod)")
    assert fake_api.terminated_ids == [moved.id, finished.id]
    assert {pod.id for pod in fake_api.live_pods()} == {active.id, stranger.id, server.id}

    assert main(["pods", "reap", "--root", str(tmp_path), "--all"]) == 0
    assert fake_api.terminated_ids == [moved.id, finished.id, active.id]
    assert {pod.id for pod in fake_api.live_pods()} == {stranger.id, server.id}
    assert API_KEY not in capsys.readouterr().out


def test_cli_without_key_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["pods", "list"]) == 2
    assert capsys.readouterr().err.startswith("error: No RunPod API key: set RUNPOD_API_KEY")


def test_estimate_skips_pods_that_would_exceed_the_dollar_budget(fake_api):
    config = RunPodConfig(gpu_types=("NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe"), budget_usd=5.0)
    _pod, attempts = create_pod_with_fallback(PodApi(ApiKey(API_KEY)), config, "metahuman-u-r", {},
                                             on_created=lambda *_: None, estimate_hours=3.0)
    assert [(a.gpu_type, a.cloud_type, a.result) for a in attempts] == [
        ("NVIDIA H100 80GB HBM3", "COMMUNITY", "over_budget"),
        ("NVIDIA H100 80GB HBM3", "SECURE", "over_budget"),
        ("NVIDIA A100 80GB PCIe", "COMMUNITY", "created"),
    ]
    assert attempts[0].message == "3.00 h x $2.69/h > $5.00"


def test_estimate_over_the_hour_budget_rents_nothing(fake_api):
    with pytest.raises(BackendError, match=r"estimated at 5.00 h, over the 4 h budget .* no pod was rented"):
        create_pod_with_fallback(PodApi(ApiKey(API_KEY)), RunPodConfig(), "metahuman-u-r", {},
                                 on_created=lambda *_: None, estimate_hours=5.0)
    assert fake_api.created_ids == []
