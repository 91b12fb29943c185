"""``notebooks/02_curation.ipynb`` headless: the parameters drive it and it writes the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import orjson
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "02_curation.ipynb"


def test_committed_without_outputs_and_with_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for name in ("username", "root", "run_dir", "strategy", "days_recent", "old_samples", "max_samples",
                 "mode", "seed", "old_sampling", "now"):
        assert f"\n{name} = " in "\n" + code[0].source
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_papermill_writes_the_selection(demo_root, tmp_path):
    import papermill

    root = tmp_path / "root"
    shutil.copytree(demo_root, root)
    run_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), progress_bar=False,
        execution_timeout=240,
        parameters={"root": str(root), "run_dir": str(run_dir), "strategy": "heavy-history",
                    "old_samples": 120, "days_recent": 20, "seed": 7, "now": "2025-11-30T00:00:00Z"})
    section = orjson.loads((run_dir / "manifest.json").read_bytes())["selection"]
    assert (section["strategy"], section["seed"], section["now"]) == ("heavy-history+custom", 7,
                                                                     "2025-11-30T00:00:00Z")
    assert section["parameters"]["old_sampling"] == "stratified"
    assert section["counts"]["old_selected"] == 120
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert any("application/vnd.plotly.v1+json" in output.get("data", {}) for output in outputs)
    assert not [output for output in outputs if output.get("output_type") == "error"]
