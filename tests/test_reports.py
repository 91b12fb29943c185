"""HTML reports: offline plotly, no secrets, redaction, run report and cross-run index."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

from metahuman_lib._io import atomic_write_json
from metahuman_lib.profile import Profile
from metahuman_lib.reports import (
    REDACTED_NOTE,
    SECRET_PLACEHOLDER,
    ReportParams,
    export_notebook_html,
    forgetting_by_month_figure,
    memory_text_index,
    parameter_changes,
    projected_annual_cost,
    run_labels,
    run_summary,
    secret_values,
    write_index,
    write_run_report,
)
from metahuman_lib.runfolder import update_manifest

FAKE_KEY = "rpa_FAKEKEY0123456789abcdefTEST"
MEMORY = "Honestly pretty wired after the climbing gym, my forearms are still shaking a little"


def _executed_notebook(path: Path) -> Path:
    """A notebook as papermill leaves it: a figure, a table, a memory quote, a widget, a secret."""
    nb = nbformat.v4.new_notebook()
    figure = go.Figure(go.Bar(x=["recent", "old"], y=[12, 30])).to_plotly_json()
    cells = [
        ("fig", [nbformat.v4.new_output("display_data", data={
            "application/vnd.plotly.v1+json": json.loads(json.dumps(figure, default=list)),
            "text/plain": "Figure"})]),
        ("table", [nbformat.v4.new_output("execute_result", execution_count=2, data={
            "text/html": "<table><tr><td>short share</td><td>41.2%</td></tr></table>",
            "text/plain": "short share 41.2%"})]),
        ("quote", [nbformat.v4.new_output("stream", name="stdout", text=f"preview: {MEMORY}\n")]),
        ("widget", [nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2,
                                                          "version_minor": 0},
            "text/plain": "IntSlider(value=30)"})]),
        ("secret", [nbformat.v4.new_output("stream", name="stdout", text=f"key={FAKE_KEY}\n")]),
    ]
    for source, outputs in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.outputs = outputs
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def fake_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUNPOD_API_KEY", FAKE_KEY)
    return FAKE_KEY


def test_export_is_offline_and_secret_free(tmp_path: Path, fake_key: str) -> None:
    notebook = _executed_notebook(tmp_path / "step.ipynb")
    page = export_notebook_html(notebook, tmp_path / "step.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert page.count("Plotly.newPlot") == 1
    assert "plotly.js v" in page or "plotly.min.js" in page or "Plotly" in page
    assert fake_key not in page and SECRET_PLACEHOLDER in page
    assert fake_key not in notebook.read_text()
    assert MEMORY in page
    assert "IntSlider" not in page  # a widget's Python repr is no content for a reader


def test_redacted_export_drops_memory_quotes_only(tmp_path: Path) -> None:
    notebook = _executed_notebook(tmp_path / "step.ipynb")
    memory = memory_text_index([MEMORY, "ok"])
    page = export_notebook_html(notebook, tmp_path / "step.html", redact=True, memory=memory).read_text()
    assert "climbing gym" not in page
    assert REDACTED_NOTE in page
    assert "41.2%" in page and "Plotly.newPlot" in page


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (f"<td>{MEMORY[:60]}...</td>", True),
        ("Honestly pretty wired after the climbing", True),
        ("Honestly pretty wired after the", False),
        ("short share 41.2%", False),
        ("I said: Going to bed now, goodnight!", True),
    ],
)
def test_memory_text_detection(text: str, found: bool) -> None:
    index = memory_text_index([MEMORY, "Going to bed now, goodnight!", "ok"])
    assert index.found_in(text) is found


def test_secret_values_pick_secret_looking_names() -> None:
    env = {"RUNPOD_API_KEY": FAKE_KEY, "HF_TOKEN": "hf_abcdefghijk", "PATH": "/usr/bin:/bin:/x/y/z",
           "AWS_SECRET_ACCESS_KEY": "short"}
    assert secret_values(env) == [FAKE_KEY, "hf_abcdefghijk"]


def _fake_run(profile: Profile, label: str, *, kind: str, days: int | None, cost: float,
              recent: tuple[float, float], old: tuple[float, float], status: str = "succeeded") -> Path:
    run_dir = profile.run_dir(label)
    blocks = {"selection": {"days_recent": days} if days else {}}

    def change(manifest: dict) -> None:
        manifest["cycle"] = {"status": status, "kind": kind, "backend": "local", "dry_run": False,
                             "parameters": {"name": kind, "now": f"{label[:10]}T00:00:00Z", "seed": 0,
                                            "kind": kind, "flags": [], "blocks": blocks}}
        manifest["selection"] = {"counts": {"train_samples": 400, "recent_selected": 100,
                                            "old_selected": 300}}
        manifest["training"] = {"cost": {"estimate_usd": cost * 1.1, "actual_usd": cost}}
        manifest["evaluation"] = {"passed": True, "reasons": ["recent loss improved"], "checks": [
            {"name": "learning", "passed": True, "detail": "recent loss improved"}]}
        manifest["registry"] = {"version": 1 if kind == "foundation" else 2, "status": "promoted",
                                "promoted": True}
        manifest["steps"] = {"03_training_launch": {"title": "Training", "status": status,
                                                    "report": "reports/03_training_launch.html"}}

    update_manifest(run_dir, change)
    atomic_write_json(run_dir / "metrics.json", {
        "before": {"eval_recent": {"loss": recent[0]}, "eval_old": {"loss": old[0]}},
        "after": {"eval_recent": {"loss": recent[1]}, "eval_old": {"loss": old[1]}}})
    (run_dir / "train_log.jsonl").write_text("".join(json.dumps({"step": i, "loss": 3 - i / 10}) + "\n"
                                                     for i in range(1, 6)))
    if kind == "update":
        atomic_write_json(run_dir / "train_config.json", {"parent": {"version": 1, "kind": "model"}})
    return run_dir


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Profile, Path, Path]:
    profile = Profile(tmp_path, "tester")
    first = _fake_run(profile, "2025-10-31-000000-aaaaaa", kind="foundation", days=None, cost=4.0,
                      recent=(3.0, 2.4), old=(3.0, 2.5))
    second = _fake_run(profile, "2025-11-30-000000-bbbbbb", kind="update", days=30, cost=2.0,
                       recent=(2.5, 2.0), old=(2.5, 2.525))
    return profile, first, second


def test_run_summary_reads_learning_forgetting_and_cost(two_runs: tuple[Profile, Path, Path]) -> None:
    _, _, second = two_runs
    summary = run_summary(second)
    assert summary["kind"] == "update" and summary["train_samples"] == 400
    assert summary["learning"] == pytest.approx(0.2)
    assert summary["forgetting"] == pytest.approx(0.01)
    assert (summary["cost_estimate"], summary["cost_actual"]) == (pytest.approx(2.2), 2.0)


@pytest.mark.parametrize(
    ("runs_per_year", "expected"),
    [(None, 4.0 + 11 * 2.0), (26, 4.0 + 25 * 2.0)],
)
def test_projected_annual_cost_follows_the_seed(two_runs: tuple[Profile, Path, Path],
                                                runs_per_year: int | None, expected: float) -> None:
    summaries = [run_summary(d) for d in two_runs[1:]]
    assert projected_annual_cost(summaries, runs_per_year) == pytest.approx(expected)


def test_run_report_and_index(two_runs: tuple[Profile, Path, Path], fake_key: str) -> None:
    profile, first, second = two_runs
    report = write_run_report(second).read_text()
    assert 'href="reports/03_training_launch.html"' in report
    assert "<h2>Artifacts</h2>" in report and '<a href="metrics.json">metrics.json</a>' in report
    assert "recent loss improved" in report and "Training loss" in report
    index = write_index(profile).read_text()
    assert "../fine-tuned-models/2025-11-30/2025-11-30-000000-bbbbbb/report.html" in index
    assert "2025-10-31-000000-aaaaaa/report.html" not in index  # no report yet
    write_run_report(first)
    index = write_index(profile).read_text()
    assert "../fine-tuned-models/2025-10-31/2025-10-31-000000-aaaaaa/report.html" in index
    assert "-20.0%" in index and '<span class="bad">+1.0%</span>' in index  # the old probe rose: forgetting
    assert "What changed against the parent" in index and "Training loss of each run" in index
    assert "Recent and old-probe loss of each version" in index
    assert ">26<" in index.replace(" ", "")  # projected annual: 4 + 11 x 2
    assert not re.search(r"<script[^>]*\bsrc=", index) and fake_key not in index


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redcat": True}, r"Unknown report key 'redcat'\. Did you mean 'redact'\?"),
        ({"redact": "yes"}, r"report\.redact must be true or false, got 'yes'\."),
        ({"runs_per_year": 0}, r"report\.runs_per_year must be a whole number >= 1, got 0\."),
    ],
)
def test_report_params_errors(values: dict, message: str) -> None:
    from metahuman_lib.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ReportParams.from_dict(values)


@pytest.mark.browser
def test_report_draws_in_headless_chromium(tmp_path: Path, two_runs: tuple[Profile, Path, Path],
                                           fake_key: str) -> None:
    from _helpers_browser import open_report

    notebook = _executed_notebook(tmp_path / "step.ipynb")
    pages = [export_notebook_html(notebook, tmp_path / "step.html"), write_run_report(two_runs[2]),
             write_index(two_runs[0])]
    for page in pages:
        result = open_report(page)
        assert result.errors == [] and result.external_requests == [], page
        assert result.plots >= 1 and result.drawn_svgs >= result.plots, page
        assert fake_key not in result.text


def test_run_report_shows_the_prompt_format(two_runs: tuple[Profile, Path, Path]) -> None:
    from metahuman_lib.chat_formats import LLAMA31

    _profile, _first, second = two_runs
    served = LLAMA31.serve([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi <b>there</b>"}])
    atomic_write_json(second / "prompt_format.json", {
        "chat_format": LLAMA31.record(), "sample_index": 0, "messages": [],
        "prompt": "<|begin_of_text|>" + served, "completion": "Hello!<|eot_id|>", "served_prompt": served})
    report = write_run_report(second).read_text()
    section = report[report.index("<h2>Prompt format</h2>"):]
    assert "Llama 3.1-3.3" in section and "date_string=26 Jul 2024" in section
    assert "yes, byte for byte" in section and "&lt;|eot_id|&gt;" in section
    assert "Hi &lt;b&gt;there&lt;/b&gt;" in section and "<b>there" not in section
    redacted = write_run_report(second, redact=True).read_text()
    assert "<h2>Prompt format</h2>" in redacted and "Hi &lt;b&gt;" not in redacted


def test_a_large_gap_between_estimated_and_actual_cost_is_explained() -> None:
    from metahuman_lib.reports import _cost_section

    far = _cost_section({"cost_estimate": 1.40, "cost_actual": 0.01, "backend": "local"})
    assert "The estimate is 140x the actual: it adds a fixed overhead per run" in far
    assert "x the actual" not in _cost_section({"cost_estimate": 2.2, "cost_actual": 2.0})
    assert "The actual is 5x the estimate" in _cost_section({"cost_estimate": 1.0, "cost_actual": 5.0})


def test_index_sets_sibling_monthly_runs_against_their_parent(two_runs: tuple[Profile, Path, Path]) -> None:
    """Two monthly runs of one month on v1, one without replay: distinct labels, each compared
    with v1's run, and the old probe per month of both in one chart with the gate's limit."""
    profile, first, replayed = two_runs
    forgot = _fake_run(profile, "2025-11-30-000000-cccccc", kind="update", days=30, cost=1.0,
                       recent=(2.5, 1.9), old=(2.5, 3.0))
    for run_dir, after in ((replayed, (2.0, 2.6)), (forgot, (3.5, 2.9))):
        update_manifest(run_dir, lambda m: m["cycle"]["parameters"]["blocks"].update(
            {"gate": {"max_old_worsening": 0.02}}))
        atomic_write_json(run_dir / "metrics.json", {
            "before": {"eval_recent": {"loss": 2.5}, "eval_old": {"loss": 2.5, "by_month": {
                "2025-09": {"loss": 2.0, "samples": 4}, "2025-10": {"loss": 3.0, "samples": 6}}}},
            "after": {"eval_recent": {"loss": 2.0}, "eval_old": {"loss": sum(after) / 2, "by_month": {
                "2025-09": {"loss": after[0], "samples": 4}, "2025-10": {"loss": after[1], "samples": 6}}}}})
    update_manifest(forgot, lambda m: m["cycle"]["parameters"]["blocks"]["selection"].update({"old_samples": 0}))
    summaries = [run_summary(d) for d in (first, replayed, forgot)]
    labels = run_labels(summaries)
    assert len(set(labels)) == 3 and labels[1].startswith("v2 2025-11-30 update")
    changes = parameter_changes(summaries)
    assert [(c["run"], c["parent"]) for c in changes] == [(replayed.name, first.name), (forgot.name, first.name)]
    assert "selection.old_samples: — → 0" in changes[1]["changes"]
    chart = forgetting_by_month_figure(summaries, labels)
    assert [trace.name for trace in chart.data] == labels[1:]
    assert [round(y, 3) for y in chart.data[1].y] == [0.75, -0.033]
    assert chart.layout.shapes[0].y0 == 0.02
    index = write_index(profile).read_text()
    assert "What changed against the parent" in index and '<span class="bad">2025-09 +75.0%</span>' in index
