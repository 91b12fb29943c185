"""Plotly figures for the notebooks and reports; each takes plain tables and returns a Figure.

Figures never compute metrics themselves: they draw what :mod:`metahuman_lib.quality` (and
later modules) return, so a notebook cell is one call and the numbers match the reports.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from metahuman_lib.quality import LONG_MIN_WORDS, SHORT_MAX_WORDS, QualityGates, QualityMetrics

_MODE_COLOURS = {"dual": "#8e6bbf", "emulation": "#3f8fc0", "agent": "#e08a2e"}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 30, "t": 60, "b": 50}}


def length_distribution_figure(samples: pd.DataFrame, bin_size: int = 10) -> go.Figure:
    """Histogram of answer lengths in words, with the 40-word (short) and 100-word (long) lines."""
    words = samples["word_count"] if len(samples) else pd.Series([], dtype="int64")
    upper = max(int(words.max()) if len(words) else 0, LONG_MIN_WORDS + bin_size)
    figure = go.Figure(go.Histogram(x=words, xbins={"start": 0.5, "end": upper + bin_size,
                                                    "size": bin_size},
                                    marker_color="#3f8fc0", name="samples"))
    for x, label in ((SHORT_MAX_WORDS + 0.5, "short ≤ 40"), (LONG_MIN_WORDS - 0.5, "long > 100")):
        figure.add_vline(x=x, line_dash="dash", line_color="#c0392b",
                         annotation_text=label, annotation_position="top right")
    figure.update_layout(title=f"Answer length ({len(words):,} samples)", xaxis_title="words",
                         yaxis_title="samples", bargap=0.05, **_LAYOUT)
    return figure


def mode_mix_figure(metrics: QualityMetrics, gates: QualityGates | None = None) -> go.Figure:
    """Share of samples per cognitive mode, against the seed's target band for each mode."""
    gates = gates or QualityGates()
    modes = list(gates.mode_bands)
    values = [metrics.mode_pct.get(mode, 0.0) for mode in modes]
    figure = go.Figure(go.Bar(x=modes, y=values, marker_color=[_MODE_COLOURS.get(m, "#888") for m in modes],
                              text=[f"{v:.1f}%" for v in values], textposition="outside",
                              name="samples"))
    for index, mode in enumerate(modes):
        low, high = gates.mode_bands[mode]
        figure.add_shape(type="rect", x0=index - 0.45, x1=index + 0.45, y0=low, y1=high,
                         line={"color": "#27ae60", "dash": "dot"}, fillcolor="rgba(39,174,96,0.12)")
    figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="seed target band",
                                marker={"symbol": "square", "color": "rgba(39,174,96,0.4)"}))
    figure.update_layout(title="Mode mix against the seed's targets", yaxis_title="% of samples",
                         yaxis_range=[0, max([*values, 60.0]) + 10], **_LAYOUT)
    return figure


def monthly_volume_figure(volume: pd.DataFrame) -> go.Figure:
    """Memories in and samples out per month (the table of :func:`quality.monthly_volume`)."""
    figure = go.Figure([
        go.Bar(x=volume["month"], y=volume["memories"], name="memories", marker_color="#b0c4de"),
        go.Bar(x=volume["month"], y=volume["samples"], name="samples", marker_color="#3f8fc0"),
    ])
    figure.update_layout(title="Memories and samples per month (UTC)", barmode="group",
                         xaxis_title="month", yaxis_title="count", **_LAYOUT)
    return figure


def type_coverage_figure(coverage: pd.DataFrame) -> go.Figure:
    """Per memory type: samples kept and memories dropped by reason, as stacked bars."""
    reasons = [c for c in coverage.columns if c not in ("type", "memories", "samples", "dropped")]
    ordered = coverage.iloc[::-1]
    traces = [go.Bar(y=ordered["type"], x=ordered["samples"], name="samples", orientation="h",
                     marker_color="#3f8fc0")]
    traces += [go.Bar(y=ordered["type"], x=ordered[reason], name=reason.replace("_", " "),
                      orientation="h") for reason in reasons]
    figure = go.Figure(traces)
    figure.update_layout(title="What each memory type became", barmode="stack",
                         xaxis_title="memories", height=max(350, 28 * len(coverage) + 120), **_LAYOUT)
    return figure
