"""Plotly figures for the pages. Builders take plain data (dicts, lists, arrays) and return figures."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fer_core.draw import COLORS
from fer_core.labels import CLASSES

SPLIT_LABELS = {
    "train": "Training",
    "public_test": "PublicTest",
    "private_test": "PrivateTest",
    "test_unlabelled_split": "Test",
}


def _rgb(name: str) -> str:
    r, g, b = COLORS.get(name, (128, 128, 128))
    return f"rgb({r},{g},{b})"


def class_counts(counts: dict[str, dict[str, int]], share: bool) -> go.Figure:
    """Grouped bars: one group per class, one bar per split; absolute counts or share of split."""
    fig = go.Figure()
    for split, per_class in counts.items():
        values = np.array([per_class[c] for c in CLASSES], dtype=float)
        if share and values.sum():
            values = values / values.sum()
        fig.add_bar(
            name=SPLIT_LABELS.get(split, split),
            x=list(CLASSES),
            y=values,
            hovertemplate="%{x}: %{y:" + (".1%" if share else ",d") + "}<extra></extra>",
        )
    fig.update_layout(
        barmode="group",
        height=360,
        margin=dict(t=30, b=10, l=10, r=10),
        yaxis_title="share of split" if share else "images",
        yaxis_tickformat=".0%" if share else ",d",
        legend_title="split",
    )
    return fig


def class_weights(weights: dict[str, dict[str, float]]) -> go.Figure:
    fig = go.Figure()
    for scheme, per_class in weights.items():
        fig.add_bar(name=scheme, x=list(per_class), y=list(per_class.values()))
    fig.update_layout(
        barmode="group",
        height=300,
        margin=dict(t=30, b=10, l=10, r=10),
        yaxis_title="loss weight (mean 1)",
        legend_title="scheme",
    )
    return fig


def intensity_histograms(intensity: dict[str, np.ndarray]) -> go.Figure:
    """Distribution of pixel intensity per class (`report.class_pixel_summary`'s bins)."""
    fig = go.Figure()
    for name, share in intensity.items():
        width = 256 / len(share)
        fig.add_scatter(
            x=(np.arange(len(share)) + 0.5) * width,
            y=share,
            name=name,
            mode="lines",
            line=dict(color=_rgb(name), width=2),
        )
    fig.update_layout(
        height=320,
        margin=dict(t=30, b=10, l=10, r=10),
        xaxis_title="intensity",
        yaxis_title="share of pixels",
        yaxis_tickformat=".1%",
    )
    return fig


def history(rows: list[dict], title: str = "") -> go.Figure:
    """Loss and accuracy per epoch, train and validation, side by side."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    epochs = [r["epoch"] for r in rows]
    for key, name, dash, col in [
        ("train_loss", "train", None, 1),
        ("val_loss", "validation", "dot", 1),
        ("train_acc", "train", None, 2),
        ("val_acc", "validation", "dot", 2),
    ]:
        fig.add_scatter(
            x=epochs,
            y=[r[key] for r in rows],
            name=name,
            mode="lines+markers",
            line=dict(dash=dash, color="#1f77b4" if name == "train" else "#d62728"),
            showlegend=col == 1,
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(height=340, margin=dict(t=40, b=10, l=10, r=10), title=title or None)
    return fig


def compare_runs(runs: dict[str, list[dict]], metric: str = "val_acc") -> go.Figure:
    fig = go.Figure()
    for name, rows in runs.items():
        fig.add_scatter(
            x=[r["epoch"] for r in rows], y=[r[metric] for r in rows], name=name, mode="lines"
        )
    fig.update_layout(
        height=340,
        margin=dict(t=30, b=10, l=10, r=10),
        xaxis_title="epoch",
        yaxis_title=metric.replace("_", " "),
        yaxis_tickformat=".0%" if "acc" in metric or "f1" in metric else None,
    )
    return fig


def confusion(matrix: list[list[float]], classes: list[str], normalized: bool) -> go.Figure:
    z = np.asarray(matrix, dtype=float)
    text = [[f"{v:.0%}" if normalized else f"{int(v)}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=classes,
            y=classes,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
            showscale=False,
        )
    )
    fig.update_layout(
        height=460,
        margin=dict(t=30, b=10, l=10, r=10),
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
    )
    return fig


def probabilities(probs: dict[str, float], height: int = 220) -> go.Figure:
    names = list(probs)
    fig = go.Figure(
        go.Bar(
            x=[probs[n] for n in names],
            y=names,
            orientation="h",
            marker_color=[_rgb(n) for n in names],
            text=[f"{probs[n]:.0%}" for n in names],
            textposition="auto",
        )
    )
    fig.update_layout(
        height=height,
        margin=dict(t=10, b=10, l=10, r=10),
        xaxis=dict(range=[0, 1], tickformat=".0%"),
        yaxis_autorange="reversed",
    )
    return fig


def per_class_report(per_class: dict[str, dict[str, float]]) -> go.Figure:
    fig = go.Figure()
    for metric in ("precision", "recall", "f1"):
        fig.add_bar(name=metric, x=list(per_class), y=[m[metric] for m in per_class.values()])
    fig.update_layout(
        barmode="group", height=320, margin=dict(t=30, b=10, l=10, r=10), yaxis_tickformat=".0%"
    )
    return fig
