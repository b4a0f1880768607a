"""Plotly figures for the pages. Builders take plain data (dicts, lists, arrays) and return figures."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fer_core.labels import CLASSES
from fer_core.vision.draw import COLORS

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
        fig.add_bar(
            name=scheme,
            x=list(per_class),
            y=list(per_class.values()),
            hovertemplate="%{x}: %{y:.2f}<extra>" + scheme + "</extra>",
        )
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
    # Whole epochs only (one epoch alone drew ticks at 0.5 and 1.5), and percent ticks that never
    # repeat a label (a narrow range drew "24%, 24%, 25%").
    fig.update_xaxes(title_text="epoch", tickformat="d", dtick=1 if len(epochs) <= 12 else None)
    accuracies = [r[k] for r in rows for k in ("train_acc", "val_acc")]
    fig.update_yaxes(**_percent_axis(accuracies), row=1, col=2)
    fig.update_layout(height=340, margin=dict(t=40, b=10, l=10, r=10), title=title or None)
    return fig


def _percent_axis(values: list[float]) -> dict:
    """A share axis whose ticks are whole percents, 4 to 8 of them, with distinct labels."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    step = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2) if (high - low) / s <= 6), 0.25)
    low, high = np.floor(low / step - 0.5) * step, np.ceil(high / step + 0.5) * step
    return dict(tickformat=".0%", dtick=step, range=[max(0.0, float(low)), min(1.0, float(high))])


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


def confusion(
    matrix: list[list[float]],
    classes: list[str],
    normalized: bool,
    marked: tuple[str, str] | None = None,
) -> go.Figure:
    """The confusion matrix (rows true, columns predicted), with `marked` = (true, predicted)
    outlined. Clicks land on an invisible marker per cell: Plotly reports no selection for a
    heatmap, but does for scatter points (read back with `clicked_cell`)."""
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
            hoverinfo="skip",
            showscale=False,
        )
    )
    cells = [(t, p) for t in range(len(classes)) for p in range(len(classes))]
    invisible = dict(opacity=0)
    fig.add_scatter(
        x=[classes[p] for _, p in cells],
        y=[classes[t] for t, _ in cells],
        text=[text[t][p] for t, p in cells],
        mode="markers",
        marker=dict(size=40, symbol="square", color="rgba(0,0,0,0)"),
        selected=dict(marker=invisible),
        unselected=dict(marker=invisible),
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
        showlegend=False,
    )
    if marked is not None and set(marked) <= set(classes):
        t, p = (classes.index(c) for c in marked)
        fig.add_shape(
            type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5,
            line=dict(color="#ff7f0e", width=4), name="marked",
        )  # fmt: skip
    fig.update_layout(
        height=460,
        margin=dict(t=30, b=10, l=10, r=10),
        xaxis=dict(title="predicted", range=[-0.5, len(classes) - 0.5]),
        yaxis=dict(title="true", range=[len(classes) - 0.5, -0.5]),  # first class on top
        hoverdistance=100,  # the nearest cell centre: the cell under the pointer
    )
    return fig


def clicked_cell(event) -> tuple[str, str] | None:
    """(true, predicted) of the cell a `confusion` chart's selection event names, else None."""
    points = (event or {}).get("selection", {}).get("points", [])
    for point in points:
        if "x" in point and "y" in point:
            return str(point["y"]), str(point["x"])
    return None


def probabilities(probs: dict[str, float], height: int = 220) -> go.Figure:
    names = list(probs)
    fig = go.Figure(
        go.Bar(
            x=[probs[n] for n in names],
            y=names,
            orientation="h",
            marker_color=[_rgb(n) for n in names],
            text=[f"{probs[n]:.0%}" for n in names],
            # beside each bar, level: inside small bars plotly turned the labels sideways
            textposition="outside",
            textangle=0,
            cliponaxis=False,
        )
    )
    fig.update_layout(
        height=height,
        margin=dict(t=10, b=10, l=10, r=10),
        # three level ticks: in a narrow column plotly turned five of them sideways
        xaxis=dict(range=[0, 1.18], tickformat=".0%", tickvals=[0, 0.5, 1.0], tickangle=0),
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


def emotion_timeline(rows, classes: list[str], title: str = "", height: int = 320) -> go.Figure:
    """One face's probabilities over time: rows has time_s and one column per class."""
    fig = go.Figure()
    for name in classes:
        fig.add_scatter(
            x=rows["time_s"],
            y=rows[name],
            name=name,
            mode="lines",
            line=dict(color=_rgb(name), width=2),
            hovertemplate="%{y:.0%}",
        )
    fig.update_layout(
        height=height,
        margin=dict(t=40 if title else 10, b=10, l=10, r=10),
        title=title or None,
        hovermode="x unified",  # one box: the time and every class's probability
        xaxis=dict(title="time (s)", hoverformat=".2f", ticksuffix=" s"),
        yaxis=dict(range=[0, 1], tickformat=".0%", title="probability"),
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
    )
    return fig


def face_segments(segments: dict[int, list], focus: int | None = None) -> go.Figure:
    """Who showed what, when: a row per face id, coloured by its most likely emotion over time.
    segments: face id -> [(start_s, end_s, label), ...]; the focused face's row is labelled bold."""
    fig = go.Figure()
    for label in CLASSES:
        bars = [
            (f"face {face_id}", start, end - start)
            for face_id, runs in segments.items()
            for start, end, name in runs
            if name == label
        ]
        if not bars:
            continue
        y, base, width = zip(*bars)
        fig.add_bar(
            y=y,
            x=width,
            base=base,
            orientation="h",
            name=label,
            marker_color=_rgb(label),
            customdata=[b + w for b, w in zip(base, width)],
            hovertemplate="%{y}: " + label + " %{base:.2f}–%{customdata:.2f} s<extra></extra>",
        )
    order = [f"face {face_id}" for face_id in segments]
    ticks = [f"<b>{name}</b>" if name == f"face {focus}" else name for name in order]
    fig.update_layout(
        barmode="overlay",
        height=90 + 28 * len(segments),
        margin=dict(t=10, b=10, l=10, r=10),
        xaxis=dict(title="time (s)", ticksuffix=" s"),
        yaxis=dict(categoryorder="array", categoryarray=order, autorange="reversed",
                   tickvals=order, ticktext=ticks),
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
    )  # fmt: skip
    return fig


def reliability(calibration: dict) -> go.Figure:
    """Reliability diagram: accuracy against confidence per bin, before and after calibration
    (marker area ~ faces in the bin), with the diagonal of perfect calibration."""
    fig = go.Figure()
    fig.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="perfect", line=dict(dash="dot", color="grey")
    )
    for key, name in (("reliability_before", "uncalibrated"), ("reliability_after", "calibrated")):
        curve = calibration.get(key)
        if not curve:
            continue
        count = np.asarray(curve["count"], dtype=float)
        fig.add_scatter(
            x=curve["confidence"],
            y=curve["accuracy"],
            mode="lines+markers",
            name=name,
            marker=dict(size=6 + 18 * np.sqrt(count / count.max())),
            customdata=curve["count"],
            hovertemplate="confidence %{x:.0%}: right %{y:.0%} of %{customdata} faces"
            "<extra></extra>",
        )
    fig.update_layout(
        height=320,
        margin=dict(t=10, b=10, l=10, r=10),
        xaxis=dict(title="confidence (top probability)", tickformat=".0%", range=[0, 1]),
        yaxis=dict(title="accuracy", tickformat=".0%", range=[0, 1]),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
