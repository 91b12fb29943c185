"""Notebooks 04 (evaluation) and 05 (registry) executed with papermill on constructed run folders."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from _helpers_registry import make_run, metrics

from metahuman_lib import registry
from metahuman_lib.profile import Profile

papermill = pytest.importorskip("papermill")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOW = "2026-01-03T00:00:00Z"


def execute(name: str, out_dir: Path, **parameters) -> dict:
    output = out_dir / f"{name}-{len(list(out_dir.glob('*.ipynb')))}.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / name), str(output), parameters=parameters,
                               kernel_name="python3", progress_bar=False, execution_timeout=120)
    return orjson.loads(output.read_bytes())


def manifest(run_dir: Path) -> dict:
    return orjson.loads((run_dir / "manifest.json").read_bytes())


def outputs_text(book: dict) -> str:
    parts = []
    for cell in book["cells"]:
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", "")))
            parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    profile = Profile(tmp_path / "root", "tester")
    profile.episodic_dir.mkdir(parents=True)
    return profile


def test_notebooks_are_committed_without_outputs() -> None:
    for name in ("04_evaluation.ipynb", "05_registry.ipynb"):
        book = orjson.loads((NOTEBOOKS / name).read_bytes())
        code = [c for c in book["cells"] if c["cell_type"] == "code"]
        assert code[0]["metadata"]["tags"] == ["parameters"]
        assert 'username = "demo"' in "".join(code[0]["source"]) and 'run_dir = ""' in "".join(code[0]["source"])
        assert all(not c["outputs"] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_evaluation_then_registry_inside_runs(profile: Profile, tmp_path: Path) -> None:
    good = make_run(profile, 1)
    book = execute("04_evaluation.ipynb", tmp_path, username="tester", root=str(profile.root),
                   run_dir=str(good), now=NOW)
    assert "Gate passed: recent loss" in outputs_text(book)
    assert manifest(good)["evaluation"]["passed"] is True
    assert manifest(good)["evaluation"]["decided_at"] == NOW

    execute("05_registry.ipynb", tmp_path, username="tester", root=str(profile.root), run_dir=str(good), now=NOW,
            ollama_base="tiny:latest")
    assert (good / "Modelfile").read_text().startswith("FROM tiny:latest\nADAPTER ")
    assert registry.show(profile)["current_version"] == 1
    assert manifest(good)["registry"] == {"version": 1, "status": "promoted", "promoted": True,
                                          "output_path": registry.get_version(profile, 1)["output_path"]}

    bad = make_run(profile, 2, parent_version=1, run_metrics=metrics(recent=(2.0, 2.1)))
    with pytest.raises(papermill.PapermillExecutionError, match=r"GateRefused.*Gate rejected the candidate"):
        execute("04_evaluation.ipynb", tmp_path, username="tester", root=str(profile.root),
                run_dir=str(bad), now=NOW, fail_on_reject=True, gate={"max_old_worsening": 0.5})
    assert manifest(bad)["evaluation"]["passed"] is False  # recorded before the step failed
    assert manifest(bad)["evaluation"]["figures"]["config"]["max_old_worsening"] == 0.5

    outcome = registry.register_and_promote(profile, bad, now=registry.parse_now(NOW))  # what 05 runs
    assert (outcome["status"], outcome["promoted"]) == ("rejected", False)
    assert registry.show(profile)["current_version"] == 1


@pytest.mark.slow
def test_registry_actions_by_parameter(profile: Profile, tmp_path: Path) -> None:
    passed = {"passed": True, "reasons": ["ok"]}
    for index in (1, 2):
        run = make_run(profile, index, parent_version=index - 1 or None, evaluation=passed)
        registry.register_and_promote(profile, run, now=registry.parse_now(NOW))
    book = execute("05_registry.ipynb", tmp_path, username="tester", root=str(profile.root), action="rollback")
    assert registry.show(profile)["current_version"] == 1
    assert "application/vnd.plotly.v1+json" in orjson.dumps(book).decode()  # the lineage timeline was drawn
