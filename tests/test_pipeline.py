"""Pipeline orchestration on tiny fake notebooks: order, failure recording, resume, dry run, lock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from _helpers_pipeline import FAKE_STEPS, write_fake_notebooks

from metahuman_lib.errors import ConfigError, PipelineStepError, RegistryError
from metahuman_lib.parameters import CycleFlags, resolve_parameters
from metahuman_lib.pipeline import (
    check_parameters,
    failure_reason,
    find_resumable_run,
    prepare_training,
    run_cycle,
)
from metahuman_lib.profile import Profile
from metahuman_lib.registry import run_lock
from metahuman_lib.runfolder import read_manifest

NOW = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_notebooks(tmp_path_factory.mktemp("notebooks"))


@pytest.fixture(scope="module")
def param_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("parameters")
    (folder / "foundation.yaml").write_text("selection:\n  days_recent: null\nreport:\n  redact: false\n")
    (folder / "monthly.yaml").write_text("selection:\n  days_recent: 30\n  old_samples: 3000\n")
    return folder


def _params(param_dir: Path, **flags: object):
    return resolve_parameters(CycleFlags(**flags), now=NOW, search_dirs=[param_dir])


def _profile(tmp_path: Path) -> Profile:
    profile = Profile(tmp_path / "root", "tester")
    profile.episodic_dir.mkdir(parents=True)
    return profile


def _trace(profile: Profile) -> list[str]:
    return (profile.root / "trace.txt").read_text().split()


@pytest.mark.slow
def test_failure_is_recorded_and_the_run_resumes_from_the_failed_step(
        tmp_path: Path, notebooks: Path, param_dir: Path) -> None:
    profile = _profile(tmp_path)
    (profile.root / "FAIL").write_text("inject")
    params = _params(param_dir, monthly=True, seed=5)
    with pytest.raises(PipelineStepError, match=r"Step b_gate \(Gate\) failed: quality gate failed: short "
                                                r"samples 93\.0% >= 60%\. Fix the cause, then resume with: "
                                                r"metahuman fine-tune-cycle --username tester --resume "):
        run_cycle(profile, params, backend="local", now=NOW, steps=FAKE_STEPS, notebooks_dir=notebooks,
                  progress=False)
    run_dir = profile.fine_tuned_dir / "2025-12-01"
    (run_dir,) = list(run_dir.iterdir())
    manifest = read_manifest(run_dir)
    steps = manifest["steps"]
    assert [steps[s.name]["status"] for s in FAKE_STEPS] == ["succeeded", "failed", "pending"]
    assert steps["b_gate"]["error"] == "quality gate failed: short samples 93.0% >= 60%"
    assert steps["a_prepare"]["inputs"]["parameters"] == {
        "username": "tester", "root": str(profile.root), "run_dir": str(run_dir), "seed": 5,
        "now": "2025-12-01T09:00:00Z"}
    assert steps["a_prepare"]["outputs"] == {"prepared.txt": {"bytes": len("5 2025-12-01T09:00:00Z")}}
    assert manifest["cycle"]["status"] == "failed"
    assert (run_dir / "notebooks" / "b_gate.ipynb").is_file()
    assert (run_dir / "reports" / "b_gate.html").is_file()
    assert "quality gate failed" in (run_dir / "report.html").read_text()
    assert _trace(profile) == ["a", "b"]
    first_a = steps["a_prepare"]["finished_at"]

    # the same request again resumes the unfinished run instead of starting a second one
    (profile.root / "FAIL").unlink()
    assert find_resumable_run(profile, params, backend="local", dry_run=False) == run_dir
    result = run_cycle(profile, params, backend="local", now=NOW, steps=FAKE_STEPS,
                       notebooks_dir=notebooks, progress=False)
    assert result.resumed and result.run_dir == run_dir and result.status == "succeeded"
    assert _trace(profile) == ["a", "b", "b", "c"]
    steps = read_manifest(run_dir)["steps"]
    assert steps["a_prepare"]["finished_at"] == first_a
    assert [steps[s.name]["status"] for s in FAKE_STEPS] == ["succeeded"] * 3
    assert steps["b_gate"]["error"] is None
    assert (run_dir / "trained.txt").read_text() == "trained"
    assert (profile.reports_dir / "index.html").is_file()
    with pytest.raises(ConfigError, match=r"already finished \(succeeded\); nothing to resume"):
        run_cycle(profile, params, backend="local", now=NOW, steps=FAKE_STEPS, notebooks_dir=notebooks,
                  resume_run=run_dir)


@pytest.mark.slow
def test_dry_run_prepares_but_skips_steps_that_need_a_model(tmp_path: Path, notebooks: Path,
                                                             param_dir: Path) -> None:
    profile = _profile(tmp_path)
    result = run_cycle(profile, _params(param_dir), backend="local", now=NOW, dry_run=True,
                       steps=FAKE_STEPS, notebooks_dir=notebooks, progress=False)
    assert result.status == "dry_run"
    assert dict(result.steps) == {"a_prepare": "succeeded", "b_gate": "succeeded", "c_after": "skipped"}
    assert read_manifest(result.run_dir)["steps"]["c_after"]["reason"] == "dry_run: no model was trained"
    assert (result.run_dir / "trained.txt").read_text() == "dry"
    assert _trace(profile) == ["a", "b"]


def test_a_second_run_of_the_same_profile_is_refused(tmp_path: Path, notebooks: Path,
                                                      param_dir: Path) -> None:
    profile = _profile(tmp_path)
    busy = r"Profile 'tester' is busy: run 2025-12-01-090000-abcdef \(pid \d+, started "
    with run_lock(profile, "2025-12-01-090000-abcdef"), pytest.raises(RegistryError, match=busy):
        run_cycle(profile, _params(param_dir), backend="local", now=NOW, steps=FAKE_STEPS,
                  notebooks_dir=notebooks, progress=False)
    assert not (profile.root / "trace.txt").exists()


def test_missing_notebook_is_a_config_error(tmp_path: Path, param_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"Notebook for step 'a_prepare' not found: expected "):
        run_cycle(_profile(tmp_path), _params(param_dir), backend="local", now=NOW, steps=FAKE_STEPS,
                  notebooks_dir=tmp_path / "none", progress=False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sed": 1}, r"a_prepare\.ipynb: Unknown notebook parameter 'sed'\. Did you mean 'seed'\?"),
        ({"seed": "1"}, r"a_prepare\.ipynb: parameter 'seed' expects int, got str '1'\."),
        ({"seed": True}, r"parameter 'seed' expects int, got bool True\."),
        ({"root": 3}, r"parameter 'root' expects str, got int 3\."),
    ],
)
def test_notebook_parameters_are_checked(notebooks: Path, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_parameters(notebooks / "a_prepare.ipynb", values)


@pytest.mark.parametrize(
    ("ename", "evalue", "reason"),
    [
        ("PipelineStepError", "gate failed: too few samples", "gate failed: too few samples"),
        ("ConfigError", "bad key", "bad key"),
        ("ZeroDivisionError", "division by zero", "ZeroDivisionError: division by zero"),
        ("KeyError", "", "KeyError"),
    ],
)
def test_failure_reason(ename: str, evalue: str, reason: str) -> None:
    assert failure_reason(ename, evalue) == reason


def _registered_v1(tmp_path: Path) -> Profile:
    from _helpers_registry import make_run

    from metahuman_lib.registry import register_and_promote

    profile = _profile(tmp_path)
    run = make_run(profile, 1, base_model="tiny/base-model",
                   evaluation={"passed": True, "reasons": ["ok"], "checks": []})
    register_and_promote(profile, run, now=NOW)
    return profile


def test_update_run_builds_on_the_current_version(tmp_path: Path, param_dir: Path) -> None:
    from metahuman_lib.training.config import read_train_config

    profile = _registered_v1(tmp_path)
    run_dir = profile.run_dir("2025-12-01-090000-cccccc")
    prepare_training(run_dir, profile, _params(param_dir, monthly=True))
    config = read_train_config(run_dir)
    assert (config.parent.version, config.parent.kind) == (1, "adapter")
    assert config.parent.path.endswith("/output/adapter") and config.parent.sha256
    assert config.base_model == "tiny/base-model"
    assert prepare_training(run_dir, profile, _params(param_dir, monthly=True)) is None  # kept


def test_foundation_run_has_no_parent(tmp_path: Path, param_dir: Path) -> None:
    from metahuman_lib.training.config import read_train_config

    profile = _registered_v1(tmp_path)
    run_dir = profile.run_dir("2025-12-01-090000-dddddd")
    prepare_training(run_dir, profile, _params(param_dir, base_model="other/base"))
    config = read_train_config(run_dir)
    assert (config.parent, config.base_model) == (None, "other/base")


def test_base_model_outside_the_lineage_is_refused_for_an_update(tmp_path: Path, param_dir: Path) -> None:
    profile = _registered_v1(tmp_path)
    with pytest.raises(ConfigError, match=r"--base-model other/base is not the base of the current version "
                                          r"v1 \(tiny/base-model\); an update run builds on the current"):
        prepare_training(profile.run_dir("2025-12-01-090000-eeeeee"), profile,
                         _params(param_dir, monthly=True, base_model="other/base"))


@pytest.mark.slow
def test_a_full_disk_fails_the_step_in_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    """The kernel refuses large writes (EFBIG, as a full disk refuses them with ENOSPC): the step is
    marked failed with one line naming the file, and once there is room the run resumes and finishes."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    import yaml

    from metahuman_lib.demo import write_demo_profile
    from metahuman_lib.pipeline import DEMO_QUALITY
    from metahuman_lib.strategies import read_parameter_set

    root = tmp_path / "root"
    write_demo_profile(root, "demo", memories=400, months=4)
    document = dict(read_parameter_set("foundation"))
    document["quality"] = {**(document.get("quality") or {}), **DEMO_QUALITY, "min_total_foundation": 100}
    (root / "set.yaml").write_text(yaml.safe_dump(document))
    command = [sys.executable, "-m", "metahuman_lib", "fine-tune-cycle", "--username", "demo", "--root", str(root),
               "--params", str(root / "set.yaml"), "--dry-run", "--quiet"]

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150 * 1024, resource.RLIM_INFINITY))

    failed = subprocess.run(command, check=False, capture_output=True, text=True, env=dict(os.environ),
                            timeout=300, preexec_fn=full_disk)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Step 01_quality_review (Quality review) failed: Cannot write ")
    assert "File too large" in last and "--resume" in last
    run_dir = Path(last.split("--resume ")[1])
    assert read_manifest(run_dir)["steps"]["01_quality_review"]["status"] == "failed"

    resume = [sys.executable, "-m", "metahuman_lib", "fine-tune-cycle", "--username", "demo", "--root", str(root),
              "--resume", str(run_dir), "--quiet"]
    resumed = subprocess.run(resume, check=False, capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_manifest(run_dir)["steps"]["01_quality_review"]["status"] == "succeeded"


@pytest.mark.slow
def test_a_run_refused_by_a_gate_is_finished_and_the_next_one_starts_fresh(
        tmp_path: Path, notebooks: Path, param_dir: Path) -> None:
    from datetime import timedelta

    from metahuman_lib.errors import GateRefused

    profile = _profile(tmp_path)
    (profile.root / "REFUSE").write_text("too few new samples")
    params = _params(param_dir, monthly=True, seed=5)
    with pytest.raises(GateRefused, match=r"Step b_gate \(Gate\) refused the run: Quality gates failed: "
                                          r"new_samples: only 40 new samples\. The run is finished"):
        run_cycle(profile, params, backend="local", now=NOW, steps=FAKE_STEPS, notebooks_dir=notebooks,
                  progress=False)
    (refused,) = list((profile.fine_tuned_dir / "2025-12-01").iterdir())
    manifest = read_manifest(refused)
    assert manifest["cycle"]["status"] == "refused" and manifest["steps"]["b_gate"]["status"] == "refused"
    assert find_resumable_run(profile, params, backend="local", dry_run=False) is None

    # a month of new memories later, the same command starts a new run and goes through
    (profile.root / "REFUSE").unlink()
    later = NOW + timedelta(days=30)
    result = run_cycle(profile, _params(param_dir, monthly=True, seed=5), backend="local", now=later,
                       steps=FAKE_STEPS, notebooks_dir=notebooks, progress=False)
    assert not result.resumed and result.run_dir != refused and result.status == "succeeded"
    assert read_manifest(refused)["cycle"]["status"] == "refused"


@pytest.mark.slow
def test_an_interrupted_run_resumes_and_says_which_and_why(tmp_path: Path, notebooks: Path, param_dir: Path) -> None:
    profile = _profile(tmp_path)
    (profile.root / "FAIL").write_text("inject")
    params = _params(param_dir, monthly=True, seed=5)
    with pytest.raises(PipelineStepError):
        run_cycle(profile, params, backend="local", now=NOW, steps=FAKE_STEPS, notebooks_dir=notebooks,
                  progress=False)
    (profile.root / "FAIL").unlink()
    said: list[str] = []
    result = run_cycle(profile, params, backend="local", now=NOW, steps=FAKE_STEPS, notebooks_dir=notebooks,
                       progress=False, echo=said.append)
    assert result.resumed
    assert said[0].startswith(f"Resuming run {result.run_dir.name} (it stopped on an error: Step b_gate (Gate) "
                              "failed: quality gate failed")
    assert said[0].endswith("pass --new-run to start a new run instead.")
