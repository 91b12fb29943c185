"""Plotly figures of evaluation and lineage (the notebooks 04 and 05 show them; reports reuse them)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

_STATUS_COLOURS = {"promoted": "#2ca02c", "candidate": "#1f77b4", "rejected": "#d62728", "failed": "#7f7f7f"}


def forgetting_by_month_figure(by_month: pd.DataFrame, limit_pct: float | None = 2.0) -> go.Figure:
    """Old-probe loss change per month (bars); the gate's limit as a dashed line."""
    colours = ["#d62728" if limit_pct is not None and c > limit_pct else "#1f77b4" for c in by_month["change_pct"]]
    figure = go.Figure(go.Bar(x=by_month["month"], y=by_month["change_pct"], marker_color=colours,
                              customdata=by_month[["loss_before", "loss_after"]].to_numpy(),
                              hovertemplate="%{x}: %{y:+.2f}%<br>loss %{customdata[0]:.4f} -> "
                                            "%{customdata[1]:.4f}<extra></extra>"))
    if limit_pct is not None:
        figure.add_hline(y=limit_pct, line_dash="dash", annotation_text=f"gate +{limit_pct:g}%")
    figure.update_layout(title="Forgetting per month of the old probe (loss change vs parent)",
                         xaxis_title="month", yaxis_title="loss change, %", template="plotly_white")
    return figure


def learning_curve_figure(log: pd.DataFrame) -> go.Figure:
    """Training loss per logging step, with the learning rate on a second axis when logged."""
    figure = go.Figure()
    if not log.empty and "loss" in log:
        figure.add_trace(go.Scatter(x=log["step"], y=log["loss"], mode="lines+markers", name="train loss"))
    if not log.empty and "learning_rate" in log:
        figure.add_trace(go.Scatter(x=log["step"], y=log["learning_rate"], mode="lines", name="learning rate",
                                    yaxis="y2", line={"dash": "dot"}))
    figure.update_layout(title="Learning curve", xaxis_title="step", yaxis_title="loss",
                         yaxis2={"title": "learning rate", "overlaying": "y", "side": "right"},
                         template="plotly_white")
    return figure


def before_after_figure(table: pd.DataFrame) -> go.Figure:
    """Loss before (parent) and after (candidate) on each evaluation set."""
    figure = go.Figure([go.Bar(name="before (parent)", x=table["set"], y=table["loss_before"]),
                        go.Bar(name="after (candidate)", x=table["set"], y=table["loss_after"])])
    figure.update_layout(barmode="group", title="Loss before and after", yaxis_title="loss",
                         template="plotly_white")
    return figure


def lineage_timeline_figure(history: pd.DataFrame) -> go.Figure:
    """Versions on a timeline, coloured by status, with lines from each parent to its child.

    Hovering a version shows its run, aliases, sample count and recent/old loss changes.
    """
    figure = go.Figure()
    if history.empty:
        figure.update_layout(title="No versions yet", template="plotly_white")
        return figure
    frame = history.assign(trained_at=pd.to_datetime(history["trained_at"], utc=True, format="ISO8601"))
    by_version = frame.set_index("version")
    for row in frame.itertuples():
        if pd.notna(row.parent_version) and int(row.parent_version) in by_version.index:
            parent = by_version.loc[int(row.parent_version)]
            figure.add_trace(go.Scatter(x=[parent["trained_at"], row.trained_at], y=[int(row.parent_version), row.version],
                                        mode="lines", line={"color": "#bbbbbb"}, showlegend=False, hoverinfo="skip"))
    for status, group in frame.groupby("status"):
        figure.add_trace(go.Scatter(
            x=group["trained_at"], y=group["version"], mode="markers+text", name=str(status),
            text=[f"v{v}{' (' + a + ')' if a else ''}" for v, a in zip(group["version"], group["aliases"])],
            textposition="top center", marker={"size": 14, "color": _STATUS_COLOURS.get(str(status), "#9467bd")},
            customdata=group[["run_label", "samples_train", "recent_loss_before", "recent_loss_after",
                              "old_change_pct"]].to_numpy(),
            hovertemplate="run %{customdata[0]}<br>samples %{customdata[1]}<br>recent loss %{customdata[2]} -> "
                          "%{customdata[3]}<br>old change %{customdata[4]}%<extra></extra>"))
    figure.update_layout(title="Model lineage", xaxis_title="trained at (UTC)", yaxis_title="version",
                         template="plotly_white")
    return figure
