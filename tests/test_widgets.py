"""Widgets: the controls recompute the selection, preview and chart on every change."""

from __future__ import annotations

import pandas as pd
import pytest
from _helpers_selection import NOW, make_samples

from metahuman_lib.selection import select
from metahuman_lib.strategies import Strategy, load_strategy
from metahuman_lib.training.config import TrainConfig
from metahuman_lib.widgets import (
    coverage_figure,
    coverage_table,
    preview_table,
    project_selection,
    selection_controls,
    selection_summary,
)


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return make_samples(800, days=200, seed=1)


def test_coverage_table_counts_every_part(samples):
    selection = select(samples, Strategy(days_recent=30, old_samples=100), NOW, 0)
    table = coverage_table(samples, selection)
    assert table["history"].sum() == len(samples)
    assert table["train_recent"].sum() == selection.counts.recent_selected
    assert table["train_old"].sum() == selection.counts.old_selected
    assert table["held_out"].sum() == selection.counts.eval_recent + len(selection.eval_old)
    assert table["month"].is_monotonic_increasing
    figure = coverage_figure(table)
    assert [trace.name for trace in figure.data] == ["whole history", "train: recent",
                                                     "train: old (replay)", "held out (eval)"]
    assert figure.layout.title.text.startswith("Months covered by the train set: ")


def test_preview_table(samples):
    selection = select(samples, load_strategy("monthly").with_overrides(old_samples=50), NOW, 0)
    table = preview_table(selection).set_index("quantity")["value"]
    counts = selection.counts
    assert table["old available / selected"] == f"{counts.old_available:,} / 50"
    assert table["train samples"] == f"{counts.train_samples:,}"
    assert table["projected training time and cost"].endswith(
        "on NVIDIA A100 80GB PCIe (lora, 14.77B; estimate)")  # a 14B LoRA does not fit a 4090


def test_summary_projects_size_time_and_cost(samples):
    selection = select(samples, Strategy(days_recent=30, old_samples=100), NOW, 0)
    summary = selection_summary(selection)
    assert summary["train_samples"] == summary["recent_selected"] + summary["old_selected"]
    assert summary["recent_share"] + summary["old_share"] == pytest.approx(100.0, abs=0.11)
    assert summary["tokens"] > summary["train_samples"] and summary["hours"] > 0 and summary["usd"] > 0
    assert sum(summary["mode_mix"].values()) == pytest.approx(100.0, abs=0.2)
    # a full fine-tune runs on the A100 and costs more than LoRA for the same data
    full = project_selection(selection, TrainConfig(method="full"))
    lora = project_selection(selection)
    assert full.gpu == "NVIDIA A100 80GB PCIe" and full.dollars > lora.dollars
    bigger = select(samples, Strategy(days_recent=30, old_samples=400), NOW, 0)
    assert project_selection(bigger).train_tokens > lora.train_tokens


def test_controls_follow_the_sliders(samples):
    controls = selection_controls(samples, load_strategy("monthly").with_overrides(old_samples=100), NOW, 3)
    assert controls.selection.counts.old_selected == 100
    assert 'class="mh-old-selected">100<' in controls.preview.value
    old_y = list(controls.figure.data[2].y)
    controls.old.value = 250
    assert controls.selection.counts.old_selected == 250 and list(controls.figure.data[2].y) != old_y
    recent_before = controls.selection.counts.recent_selected
    controls.days.value = 60
    assert controls.selection.counts.recent_selected > recent_before
    controls.mode.value = "dual"
    assert set(controls.selection.train["mode"]) == {"dual"}
    controls.max.value = "40"
    assert controls.selection.counts.train_samples == 40
    controls.foundation.value = True
    assert controls.selection.strategy.is_foundation and controls.days.disabled
    assert controls.current_strategy().old_sampling == "uniform"
    controls.sampling.value = "stratified"
    assert controls.selection.strategy.old_sampling == "stratified"


def test_the_old_samples_slider_is_bounded_by_the_old_pool_with_a_number_box(samples):
    controls = selection_controls(samples, load_strategy("monthly").with_overrides(old_samples=100), NOW, 3)
    pool = controls.selection.counts.old_available
    assert controls.old.max == pool < len(samples) and controls.old_box.max == pool
    controls.old_box.value = 150
    assert controls.old.value == 150 and controls.selection.counts.old_selected == 150
    controls.days.value = 90  # a longer recent window leaves fewer old samples
    assert controls.old.max == controls.selection.counts.old_available < pool
