"""Records shown as key/value tables, never as Python object dumps."""

from __future__ import annotations

from pathlib import Path

from metahuman_lib.display import rows, table
from metahuman_lib.training.backend import JobStatus
from metahuman_lib.training.config import TrainConfig


def test_dataclasses_mappings_and_paths_become_readable_rows():
    config = TrainConfig(base_model="Qwen/Qwen3-14B", probe_prompts=("Hi?", "How?"))
    shown = table(config)
    assert shown.loc["base_model", "value"] == "Qwen/Qwen3-14B"
    assert shown.loc["probe_prompts", "value"] == "Hi?, How?"
    assert shown.loc["parent", "value"] == "—"
    assert "TrainConfig(" not in shown.to_html()
    nested = dict(rows({"training": {"learning_rate": 1e-4, "extra": {}}, "path": Path("/a/b")}))
    assert nested == {"training.learning_rate": 0.0001, "training.extra": "—", "path": "/a/b"}


def test_a_job_status_is_a_table():
    status = JobStatus(state="running", phase="training", step=3, total_steps=9)
    html = table(status).to_html()
    assert "running" in html and "JobStatus(" not in html
