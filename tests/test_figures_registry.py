"""Figures of evaluation and lineage: drawn from real tables, and from empty ones without failing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from _helpers_registry import T0, make_run, metrics

from metahuman_lib import evaluation, figures_registry, registry
from metahuman_lib.profile import Profile


def test_forgetting_bars_mark_months_over_the_limit() -> None:
    by_month = evaluation.forgetting_by_month(metrics(months={"2025-07": (2.0, 2.1), "2025-08": (2.0, 2.0)}))
    figure = figures_registry.forgetting_by_month_figure(by_month, limit_pct=2.0)
    assert list(figure.data[0].marker.color) == ["#d62728", "#1f77b4"]
    assert figure.layout.shapes[0].y0 == 2.0


def test_learning_curve_and_before_after() -> None:
    log = pd.DataFrame({"step": [1, 2], "loss": [2.0, 1.5], "learning_rate": [1e-4, 5e-5]})
    curve = figures_registry.learning_curve_figure(log)
    assert [trace.name for trace in curve.data] == ["train loss", "learning rate"]
    bars = figures_registry.before_after_figure(evaluation.before_after_table(metrics()))
    assert list(bars.data[1].y) == [2.0, 2.21, 1.9]


def test_lineage_timeline_links_parents(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "tester")
    passed = {"passed": True, "reasons": []}
    for index in (1, 2):
        run = make_run(profile, index, parent_version=index - 1 or None, evaluation=passed)
        registry.register_and_promote(profile, run, now=T0)
    figure = figures_registry.lineage_timeline_figure(registry.history(profile))
    lines = [trace for trace in figure.data if trace.mode == "lines"]
    assert len(lines) == 1 and list(lines[0].y) == [1, 2]
    assert list(next(t for t in figure.data if t.name == "promoted").text) == ["v1 (previous)", "v2 (current)"]


def test_empty_tables_draw_empty_figures() -> None:
    assert figures_registry.lineage_timeline_figure(pd.DataFrame(columns=registry.HISTORY_COLUMNS)) \
        .layout.title.text == "No versions yet"
    assert len(figures_registry.learning_curve_figure(evaluation.train_log(None)).data) == 0
    figures_registry.forgetting_by_month_figure(evaluation.forgetting_by_month({}))
    figures_registry.before_after_figure(evaluation.before_after_table({}))
