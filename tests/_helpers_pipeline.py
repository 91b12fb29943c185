"""Tiny step notebooks for pipeline tests: they append to a trace file and can fail on demand."""

from __future__ import annotations

from pathlib import Path

import nbformat

from metahuman_lib.pipeline import Step

FAKE_STEPS = (
    Step("a_prepare", "Prepare"),
    Step("b_gate", "Gate", trains=True),
    Step("c_after", "After training", needs_model=True),
)

_PARAMETERS = {
    "a_prepare": 'username = "demo"\nroot = ""\nrun_dir = ""\nseed = 0\nnow = ""',
    "b_gate": 'username = "demo"\nroot = ""\nrun_dir = ""\ndry_run = False',
    "c_after": 'username = "demo"\nroot = ""\nrun_dir = ""',
}

_BODY = {
    "a_prepare": [
        ("from pathlib import Path\n"
         "Path(run_dir, 'prepared.txt').write_text(f'{seed} {now}')\n"
         "with open(Path(root, 'trace.txt'), 'a') as handle:\n    handle.write('a\\n')"),
        ("import plotly.graph_objects as go\n"
         "go.Figure(go.Bar(x=['recent', 'old'], y=[3, 4]))"),
        "print('the quick brown fox jumps over the lazy dog every single day')",
    ],
    "b_gate": [
        ("from pathlib import Path\n"
         "from metahuman_lib.errors import GateRefused, PipelineStepError\n"
         "with open(Path(root, 'trace.txt'), 'a') as handle:\n    handle.write('b\\n')\n"
         "if Path(root, 'FAIL').exists():\n"
         "    raise PipelineStepError('quality gate failed: short samples 93.0% >= 60%')\n"
         "if Path(root, 'REFUSE').exists():\n"
         "    raise GateRefused('Quality gates failed: new_samples: only 40 new samples.')\n"
         "Path(run_dir, 'trained.txt').write_text('dry' if dry_run else 'trained')"),
    ],
    "c_after": [
        ("from pathlib import Path\n"
         "with open(Path(root, 'trace.txt'), 'a') as handle:\n    handle.write('c\\n')"),
    ],
}


def write_fake_notebooks(folder: Path) -> Path:
    """Write the three fake step notebooks into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for step in FAKE_STEPS:
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell(_PARAMETERS[step.name])
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params] + [nbformat.v4.new_code_cell(src) for src in _BODY[step.name]]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(folder / f"{step.name}.ipynb"))
    return folder
