"""Notebook controls for choosing a selection, with a live preview and a coverage chart.

:class:`SelectionControls` is an ipywidgets box: sliders for the recent window and the number of
old samples, the mode, the cap, the seed and the replay method. Every change re-runs
:func:`metahuman_lib.selection.select` (pure and fast) and updates the preview (counts, recent vs
old share, mode mix, projected tokens, time and cost) and a plotly chart of the months the
selection covers against the whole history. The same figures are available as plain functions
(:func:`coverage_table`, :func:`coverage_figure`, :func:`preview_table`) for static output when
a notebook runs headless.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Collection
from datetime import datetime

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from metahuman_lib.errors import ConfigError
from metahuman_lib.samples import iter_records
from metahuman_lib.selection import Selection, mode_mix, select
from metahuman_lib.strategies import MODES, OLD_SAMPLING, Strategy, parameters_dir
from metahuman_lib.training.config import TrainConfig
from metahuman_lib.training.cost import (
    CostEstimate,
    estimate_tokens,
    load_gpu_prices,
    model_params_billions,
    project_cost,
)

#: The GPUs MetaHuman OS trains on (spec section 5): full fine-tunes on an A100, LoRA on a 4090.
SEED_GPUS = {"full": "NVIDIA A100 80GB PCIe", "lora": "NVIDIA GeForce RTX 4090"}

_ALL_MODES = "all"
_COLOURS = {"history": "#c7ccd6", "recent": "#2f6fde", "old": "#f08c2e", "held_out": "#7b4fc9"}


def coverage_table(samples: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """Samples per month: the whole history, train (recent and old) and held out.

    Columns: ``month`` (``YYYY-MM``), ``history``, ``train_recent``, ``train_old``, ``held_out``.
    Only samples up to the selection's ``now`` count as history.
    """
    history = samples[samples["timestamp"] <= pd.Timestamp(selection.now)]
    recent = selection.is_recent(selection.train)
    parts = {
        "history": history,
        "train_recent": selection.train[recent],
        "train_old": selection.train[~recent],
        "held_out": pd.concat([selection.eval_recent, selection.eval_old]),
    }
    columns = {name: _per_month(frame) for name, frame in parts.items()}
    table = pd.DataFrame(columns).fillna(0).astype("int64").sort_index()
    table.index.name = "month"
    return table.reset_index()


def _per_month(frame: pd.DataFrame) -> pd.Series:
    if frame.empty:
        return pd.Series(dtype="int64")
    months = frame["timestamp"].dt.tz_convert("UTC").dt.strftime("%Y-%m")
    return months.value_counts()


def _coverage_traces(table: pd.DataFrame) -> list[go.Bar]:
    names = (("history", "whole history"), ("train_recent", "train: recent"),
             ("train_old", "train: old (replay)"), ("held_out", "held out (eval)"))
    colours = (_COLOURS["history"], _COLOURS["recent"], _COLOURS["old"], _COLOURS["held_out"])
    return [go.Bar(x=_month_labels(table), y=table[column], name=label, marker_color=colour)
            for (column, label), colour in zip(names, colours)]


def _month_labels(table: pd.DataFrame) -> list[str]:
    """``2025-08`` -> ``Aug 2025``: labels plotly cannot mistake for dates, so each month is one bar group."""
    return [pd.Timestamp(f"{month}-01").strftime("%b %Y") for month in table["month"]]


def _coverage_title(table: pd.DataFrame) -> str:
    covered = int(((table["train_recent"] + table["train_old"]) > 0).sum())
    return f"Months covered by the train set: {covered} of {len(table)}"


def coverage_figure(table: pd.DataFrame) -> go.Figure:
    """A static bar chart of :func:`coverage_table` (for headless runs and reports)."""
    figure = go.Figure(_coverage_traces(table))
    _style(figure, _coverage_title(table))
    return figure


def _style(figure: go.Figure, title: str) -> None:
    figure.update_layout(title=title, barmode="group", height=360, margin={"l": 40, "r": 10, "t": 50, "b": 40},
                         yaxis_title="samples", legend_orientation="h",
                         xaxis_type="category")


def project_selection(selection: Selection, config: TrainConfig | None = None,
                      gpu: str | None = None) -> CostEstimate:
    """Projected tokens, time and cost of training on ``selection`` (issue 5's cost model).

    Tokens are estimated from characters (no tokenizer is loaded); the model size comes from
    the architecture table or the base model's name; the GPU defaults to the cheapest default
    RunPod GPU type the memory plan says holds the run (what the RunPod backend would rent). The
    prices file is ``parameters/gpu_prices.yaml``.
    """
    config = config or TrainConfig()
    prices = load_gpu_prices(parameters_dir() / "gpu_prices.yaml")
    tokens, samples = estimate_tokens(iter_records(selection.train))
    eval_tokens = sum(estimate_tokens(iter_records(frame))[0]
                      for frame in (selection.eval_recent, selection.eval_old))
    planned = None if gpu else _cheapest_fitting(config, prices)
    return project_cost(tokens, samples, method=config.method,
                        model_params_b=model_params_billions(config.base_model),
                        gpu=gpu or (planned.gpu if planned else SEED_GPUS[config.method]), epochs=config.epochs,
                        batch_size=config.batch_size, grad_accum=config.grad_accum,
                        max_seq_len=config.max_seq_len, packing=config.packing,
                        eval_tokens=eval_tokens, prices=prices,
                        gradient_checkpointing=planned.shape.checkpointing if planned else False)


def _cheapest_fitting(config: TrainConfig, prices: object) -> object | None:
    """The memory plan of the cheapest default RunPod GPU type that holds the run (the one the
    RunPod backend would rent), or None when the base model's architecture is unknown offline."""
    from metahuman_lib.training.memory_plan import TrainShape, architecture_of, plan_gpus
    from metahuman_lib.training.runpod_config import DEFAULT_GPU_TYPES

    try:
        arch = architecture_of(config.base_model, fetch=False)
    except ConfigError:
        return None
    fitting = plan_gpus(arch, TrainShape.from_train_config(config), DEFAULT_GPU_TYPES, prices).fitting
    return fitting[0] if fitting else None


def selection_summary(selection: Selection, config: TrainConfig | None = None) -> dict[str, object]:
    """What a person checks before training: counts, recent vs old share, mode mix, projection."""
    counts = selection.counts
    total = counts.train_samples
    projection = project_selection(selection, config)
    return {
        "train_samples": total,
        "recent_selected": counts.recent_selected,
        "old_selected": counts.old_selected,
        "recent_share": round(100 * counts.recent_selected / total, 1) if total else 0.0,
        "old_share": round(100 * counts.old_selected / total, 1) if total else 0.0,
        "eval_recent": counts.eval_recent,
        "eval_old": len(selection.eval_old),
        "mode_mix": mode_mix(selection.train),
        "tokens": projection.train_tokens,
        "hours": round(projection.hours, 2),
        "usd": projection.dollars,
        "gpu": projection.gpu,
        "method": projection.method,
        "model_params_b": projection.model_params_b,
    }


def _preview_rows(selection: Selection) -> list[tuple[str, list[tuple[str | None, str]]]]:
    """Preview rows as (quantity, parts); a part with a key is a count that gets its CSS class."""
    summary, counts = selection_summary(selection), selection.counts

    def pair(first: str, second: str) -> list[tuple[str | None, str]]:
        return [(first, f"{getattr(counts, first):,}"), (None, " / "), (second, f"{getattr(counts, second):,}")]

    return [
        ("recent available / selected", pair("recent_available", "recent_selected")),
        ("old available / selected", pair("old_available", "old_selected")),
        ("dropped by max (recent + old)",
         [(None, f"{counts.recent_dropped_by_max + counts.old_dropped_by_max:,}")]),
        ("train samples", [("train_samples", f"{counts.train_samples:,}")]),
        ("recent vs old share", [(None, f"{summary['recent_share']}% / {summary['old_share']}%")]),
        ("mode mix", [(None, ", ".join(f"{mode} {share}%" for mode, share in summary["mode_mix"].items()))]),
        ("held out: recent / old probe", [(None, f"{counts.eval_recent:,} / {summary['eval_old']:,}")]),
        ("projected training tokens (all epochs)", [(None, f"{summary['tokens']:,}")]),
        ("projected training time and cost",
         [(None, (f"{summary['hours']} h, ${summary['usd']} on {summary['gpu']} "
                  f"({summary['method']}, {summary['model_params_b']:g}B; estimate)"))]),
    ]


def preview_table(selection: Selection) -> pd.DataFrame:
    """The preview as a two-column table (quantity, value) for static display."""
    rows = [(quantity, "".join(text for _, text in parts)) for quantity, parts in _preview_rows(selection)]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def preview_html(selection: Selection) -> str:
    """The preview as HTML; each count carries a CSS class (``mh-old-selected``, ...)."""
    def cell(parts: list[tuple[str | None, str]]) -> str:
        return "".join(html.escape(text) if key is None else
                       f'<span class="mh-{key.replace("_", "-")}">{html.escape(text)}</span>'
                       for key, text in parts)

    rows = "".join(f"<tr><td>{html.escape(quantity)}</td><td>{cell(parts)}</td></tr>"
                   for quantity, parts in _preview_rows(selection))
    return f'<table class="mh-preview">{rows}</table>'


class SelectionControls(widgets.VBox):
    """Interactive selection: controls, preview and coverage chart, re-computed on every change.

    Attributes:
        selection: the selection for the current control values.
        strategy: the strategy for the current control values.
    """

    def __init__(self, samples: pd.DataFrame, strategy: Strategy, now: datetime, seed: int, *,
                 old_probe_ids: Collection[str] | None = None) -> None:
        self._samples, self._now, self._probe = samples, now, old_probe_ids
        self._base = strategy
        span_days = _history_days(samples, now)
        days = strategy.days_recent if strategy.days_recent is not None else span_days
        self.foundation = widgets.Checkbox(value=strategy.is_foundation, description="foundation (all memories)")
        self.days = widgets.IntSlider(value=min(days, span_days), min=0, max=span_days, description="recent days",
                                      continuous_update=False)
        self.old = widgets.IntSlider(value=min(strategy.old_samples, max(len(samples), 1)), min=0,
                                     max=max(len(samples), 1), description="old samples", continuous_update=False)
        # a number box beside the slider, for an exact count; both are bounded by the old pool
        self.old_box = widgets.BoundedIntText(value=self.old.value, min=0, max=self.old.max,
                                              layout=widgets.Layout(width="8em"))
        widgets.link((self.old, "value"), (self.old_box, "value"))
        self.mode = widgets.Dropdown(options=[_ALL_MODES, *MODES], value=strategy.mode or _ALL_MODES,
                                     description="mode")
        self.max = widgets.Text(value="" if strategy.max_samples is None else str(strategy.max_samples),
                                description="max (empty: no cap)", continuous_update=False,
                                style={"description_width": "initial"})
        self.seed = widgets.IntText(value=seed, description="seed")
        self.sampling = widgets.ToggleButtons(options=list(OLD_SAMPLING), value=strategy.old_sampling,
                                              description="old sampling")
        self.preview = widgets.HTML()
        self.strategy, self.selection = strategy, None
        # the chart is built with its first data and layout, so the axis type is fixed from the start
        self.figure = go.FigureWidget(coverage_figure(self._recompute()))
        for control, css in ((self.days, "mh-days"), (self.old, "mh-old"), (self.mode, "mh-mode"),
                             (self.max, "mh-max"), (self.seed, "mh-seed"), (self.sampling, "mh-sampling"),
                             (self.foundation, "mh-foundation"), (self.preview, "mh-preview-box")):
            control.add_class(css)
            control.observe(self._changed, names="value")
        chart = widgets.Box([self.figure])
        chart.add_class("mh-coverage")
        self.old_box.add_class("mh-old-box")
        super().__init__([self.foundation, self.days, widgets.HBox([self.old, self.old_box]), self.mode, self.max,
                          self.seed, self.sampling, self.preview, chart])

    def current_strategy(self) -> Strategy:
        """The strategy the controls describe now."""
        max_text = self.max.value.strip()
        return dataclasses.replace(
            self._base, name="custom",
            days_recent=None if self.foundation.value else int(self.days.value),
            old_samples=int(self.old.value), mode=None if self.mode.value == _ALL_MODES else self.mode.value,
            max_samples=int(max_text) if max_text.isdigit() else None, old_sampling=self.sampling.value)

    def _recompute(self) -> pd.DataFrame:
        """Select for the current control values, refresh the preview, return the coverage table."""
        self.days.disabled = self.foundation.value
        self.strategy = self.current_strategy()
        self.selection = select(self._samples, self.strategy, self._now, int(self.seed.value),
                                old_probe_ids=self._probe)
        pool = max(int(self.selection.counts.old_available), 1)
        if self.old.max != pool:  # the slider reaches the old pool of this window, not every sample
            self.old_box.max = self.old.max = pool
        self.preview.value = preview_html(self.selection)
        return coverage_table(self._samples, self.selection)

    def _changed(self, _change: dict | None = None) -> None:
        table = self._recompute()
        with self.figure.batch_update():
            for trace, column in zip(self.figure.data, ("history", "train_recent", "train_old", "held_out")):
                trace.x, trace.y = _month_labels(table), table[column].tolist()
            self.figure.layout.title.text = _coverage_title(table)


def _history_days(samples: pd.DataFrame, now: datetime) -> int:
    """Days from the oldest sample to ``now`` (at least 1), the recent slider's range."""
    if samples.empty:
        return 1
    oldest = samples["timestamp"].min()
    return max(int(np.ceil((pd.Timestamp(now) - oldest).total_seconds() / 86_400)), 1)


def selection_controls(samples: pd.DataFrame, strategy: Strategy, now: datetime, seed: int, *,
                       old_probe_ids: Collection[str] | None = None) -> SelectionControls:
    """Build the interactive controls for ``samples`` starting from ``strategy``."""
    return SelectionControls(samples, strategy, now, seed, old_probe_ids=old_probe_ids)


def samples_overview(samples: pd.DataFrame) -> pd.DataFrame:
    """One row about a samples table: samples, memories, first and last time, months, mode mix."""
    if samples.empty:
        return pd.DataFrame([{"samples": 0, "memories": 0}])
    shares = samples["mode"].value_counts(normalize=True)
    row = {
        "samples": len(samples),
        "memories": samples["memory_id"].nunique(),
        "first": samples["timestamp"].min().strftime("%Y-%m-%d %H:%M"),
        "last": samples["timestamp"].max().strftime("%Y-%m-%d %H:%M"),
        "months": samples["timestamp"].dt.strftime("%Y-%m").nunique(),
    }
    row.update({f"{mode} %": round(100 * float(shares.get(mode, 0.0)), 1) for mode in MODES})
    return pd.DataFrame([row])


def distances_table(selection: Selection) -> pd.DataFrame:
    """Total-variation distances of the old samples to the old pool, per method (rows) and axis."""
    return pd.DataFrame(selection.distances).T.rename_axis("method")
