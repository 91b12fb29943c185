"""The main job end to end on a small demo profile: real notebooks, papermill, local backend,
tiny model. One module-scoped demo (``make demo``: the foundation, then the same monthly run a
simulated month later without and with replay) feeds every test here, including nbval over the notebooks with their default parameters."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from metahuman_lib.demo import write_demo_profile
from metahuman_lib.errors import PipelineStepError
from metahuman_lib.memory import load_memories
from metahuman_lib.parameters import CycleFlags, resolve_parameters
from metahuman_lib.pipeline import (
    STEPS,
    CycleResult,
    default_notebooks_dir,
    demo_times,
    latest_run_dir,
    run_cycle,
    run_demo,
    write_demo_parameters,
)
from metahuman_lib.profile import Profile
from metahuman_lib.registry import current_version, get_version
from metahuman_lib.reports import REDACTED_NOTE, export_notebook_html, memory_text_index
from metahuman_lib.runfolder import read_manifest

FAKE_KEY = "rpa_E2EFAKEKEY_0123456789abcdef"
NOTEBOOKS = default_notebooks_dir()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (NOTEBOOKS / "03_training_launch.ipynb").is_file(),
                       reason="needs every step notebook (issue 5's 03_training_launch)"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Profile, list[CycleResult]]]:
    """``make demo`` as it ships (foundation, monthly without replay, monthly with replay) on the
    default demo profile, with a fake RunPod key in the environment."""
    root = tmp_path_factory.mktemp("cycle-root")
    profile = write_demo_profile(root, "demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNPOD_API_KEY", FAKE_KEY)
        results = run_demo(profile, progress=False)
        yield profile, results


def _mean_loss(run_dir: Path, tenth: int) -> float:
    """Mean training loss over one tenth (0-9) of a run's logged steps."""
    losses = [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    size = len(losses) // 10
    return sum(losses[tenth * size:(tenth + 1) * size]) / size


def test_the_demo_shows_that_replay_prevents_forgetting(demo: tuple[Profile, list[CycleResult]]) -> None:
    """The demo's story: the foundation trains close to convergence; the same monthly run forgets
    the old months without replay (rejected) and keeps them with replay (promoted as current)."""
    profile, (foundation, no_replay, replay) = demo
    assert [r.status for r in demo[1]] == ["succeeded"] * 3
    manifests = [read_manifest(r.run_dir) for r in demo[1]]
    assert [m["cycle"]["kind"] for m in manifests] == ["foundation", "update", "update"]
    assert manifests[0]["selection"]["counts"]["after_now"] > 0  # the foundation ignores the newest month
    assert _mean_loss(foundation.run_dir, 9) > 0.9 * _mean_loss(foundation.run_dir, 8)  # flattened out
    assert manifests[1]["selection"]["counts"]["old_selected"] == 0
    assert manifests[2]["selection"]["counts"]["old_selected"] > 0
    forgot, kept = (m["evaluation"]["figures"] for m in manifests[1:])
    assert forgot["recent_change_pct"] < -50 and kept["recent_change_pct"] < -50  # both learned the month
    assert forgot["old_change_pct"] > 20 and kept["old_change_pct"] <= 2  # only one forgot
    assert all(month["change_pct"] > 10 for month in forgot["old_by_month"])
    assert [m["registry"]["version"] for m in manifests] == [1, 2, 3]
    assert [get_version(profile, v)["status"] for v in (2, 3)] == ["rejected", "promoted"]
    assert get_version(profile, 2)["parent_version"] == get_version(profile, 3)["parent_version"] == 1
    assert current_version(profile)["version"] == 3
    cost = manifests[2]["cycle"]["cost"]
    assert (cost["gpu"], cost["actual_usd"]) == ("cpu", 0.0) and cost["cloud_estimate_usd"] > 0
    foundation_now, monthly_now = demo_times(profile)
    assert foundation.run_dir.name.startswith(f"{foundation_now:%Y-%m-%d}")
    assert no_replay.run_dir.name.startswith(f"{monthly_now:%Y-%m-%d}")
    index = replay.index.read_text()
    assert "Old-probe change per month, per monthly run" in index
    assert "v2 2025-11-30 demo-monthly-no-replay" in index and "v3 2025-11-30 demo-monthly" in index


def test_every_step_is_recorded_with_its_notebook_and_report(demo: tuple[Profile, list[CycleResult]]) -> None:
    _, results = demo
    for result in results:
        steps = read_manifest(result.run_dir)["steps"]
        assert list(steps) == [s.name for s in STEPS]
        for step in STEPS:
            info = steps[step.name]
            assert info["status"] == "succeeded" and info["error"] is None
            assert info["started_at"] <= info["finished_at"]
            assert info["inputs"]["parameters"]["run_dir"] == str(result.run_dir)
            assert (result.run_dir / info["notebook"]).is_file()
            assert (result.run_dir / info["report"]).is_file()
        assert "dataset.jsonl" in steps["02_curation"]["outputs"]
        assert "metrics.json" in steps["03_training_launch"]["outputs"]


OBJECT_DUMP = re.compile(r"\b[A-Z][A-Za-z]+\((?:[a-z_]+=|children=)|PosixPath\(|^\{['\"][a-z_]+['\"]: ", re.MULTILINE)


@pytest.mark.browser
def test_reports_draw_offline_and_show_tables_and_charts_never_object_dumps(
        demo: tuple[Profile, list[CycleResult]]) -> None:
    from _helpers_browser import open_report

    _, results = demo
    run = results[-1]
    pages = [run.report, run.index, *sorted((run.run_dir / "reports").glob("*.html"))]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script[^>]*\bsrc=[\"']?https?:", text), page
        seen = open_report(page)
        assert seen.errors == [] and seen.external_requests == [], page
        assert seen.plots >= 1 and seen.drawn_svgs >= seen.plots, page
        assert not OBJECT_DUMP.findall(seen.visible), (page, OBJECT_DUMP.findall(seen.visible)[:3])
        if page == run.report:
            assert seen.plots >= 3
            assert "Old probe loss per month, before and after" in seen.visible
            assert "Old probe per month" in seen.visible
            assert re.search(r"v\d+ (promoted|rejected|candidate)|Run (failed|refused)", seen.visible)


def test_no_secret_in_any_output(demo: tuple[Profile, list[CycleResult]]) -> None:
    profile, _ = demo
    leaks = [path for path in profile.root.rglob("*") if path.is_file() and path.stat().st_size < 200_000_000
             and FAKE_KEY.encode() in path.read_bytes()]
    assert leaks == []


def test_redacted_report_has_no_memory_text(demo: tuple[Profile, list[CycleResult]], tmp_path: Path) -> None:
    profile, results = demo
    memories, _ = load_memories(profile)
    texts = [t for t in memories["content"].tolist() + memories["response"].dropna().tolist()]
    index = memory_text_index(texts)
    run_dir = results[-1].run_dir
    plain = export_notebook_html(run_dir / "notebooks" / "01_quality_review.ipynb", tmp_path / "plain.html")
    assert index.found_in(plain.read_text())  # the review previews samples...
    redacted = export_notebook_html(run_dir / "notebooks" / "01_quality_review.ipynb",
                                    tmp_path / "redacted.html", redact=True, run_dir=run_dir)
    page = redacted.read_text()
    assert not index.found_in(page) and REDACTED_NOTE in page  # ...the redacted one does not


def test_resume_after_an_injected_failure(demo: tuple[Profile, list[CycleResult]], tmp_path: Path) -> None:
    profile, _ = demo
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks)
    path = notebooks / "02_curation.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from pathlib import Path as _P\nfrom metahuman_lib.errors import PipelineStepError as _E\n"
        "if _P(root, 'INJECT_FAILURE').exists():\n    raise _E('injected failure: disk full')"))
    nbformat.write(nb, str(path))
    (profile.root / "INJECT_FAILURE").write_text("1")
    sets = write_demo_parameters(profile, profile.root / "demo-models" / "tiny-qwen2",
                                 {"max_steps": 6, "probe_prompts": []})
    params = resolve_parameters(CycleFlags(params=str(sets["monthly"]), now=demo_times(profile)[1]))
    with pytest.raises(PipelineStepError, match=r"Step 02_curation \(Sample selection\) failed: injected "
                                                r"failure: disk full\. Fix the cause") as caught:
        run_cycle(profile, params, backend="local", now=params.now, dry_run=True, notebooks_dir=notebooks,
                  progress=False)
    run_dir = Path(re.search(r"--resume (\S+)$", str(caught.value)).group(1))
    assert latest_run_dir(profile) == run_dir  # same label second as the demo's monthly run, started later
    assert read_manifest(run_dir)["steps"]["02_curation"]["status"] == "failed"
    (profile.root / "INJECT_FAILURE").unlink()
    result = run_cycle(profile, params, backend="local", now=params.now, dry_run=True,
                       notebooks_dir=notebooks, progress=False)
    assert result.resumed and result.run_dir == run_dir and result.status == "dry_run"
    steps = read_manifest(run_dir)["steps"]
    assert [steps[s.name]["status"] for s in STEPS] == ["succeeded", "succeeded", "skipped",
                                                        "skipped", "skipped"]
    assert steps["02_curation"]["error"] is None
    assert steps["03_training_launch"]["reason"].startswith("dry_run: train_config.json prepared")
    assert (run_dir / "train_config.json").is_file() and not (run_dir / "metrics.json").exists()


def test_notebooks_run_with_default_parameters(demo: tuple[Profile, list[CycleResult]]) -> None:
    """nbval over notebooks/ (lax: outputs not compared) with $METAHUMAN_ROOT at the demo root."""
    profile, _ = demo
    env = {**os.environ, "METAHUMAN_ROOT": str(profile.root), "PLOTLY_RENDERER": "plotly_mimetype"}
    env.pop("RUNPOD_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--rootdir", str(profile.root), *map(str, sorted(NOTEBOOKS.glob("*.ipynb")))],
        cwd=profile.root, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
