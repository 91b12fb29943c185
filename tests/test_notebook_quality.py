"""The quality review notebook runs end to end on the demo profile (papermill), inside a run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill as pm

from metahuman_lib.runfolder import read_manifest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_quality_review.ipynb"


def test_notebook_is_committed_without_outputs_and_has_parameters() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for name in ("username", "root", "run_dir", "mode", "kind"):
        assert f"{name} = " in code[0].source
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_executes_on_the_demo_profile(demo_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    output = tmp_path / "01_quality_review.out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(output), kernel_name="python3", progress_bar=False,
                        execution_timeout=300, cwd=str(tmp_path),
                        parameters={"username": "demo", "root": str(demo_root), "run_dir": str(run_dir),
                                    "gate_settings": {"min_total_foundation": 100}})
    executed = nbformat.read(output, as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plotly = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plotly) == 4
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "- Short samples (<=40 words): " in printed
    section = read_manifest(run_dir)["quality"]
    assert section["passed"] is True and section["metrics"]["total"] > 100
