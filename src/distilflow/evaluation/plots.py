"""PNG figures for the evaluate and report stages: matplotlib on the Agg backend, no display needed.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so nothing lingers in a global figure
registry between calls and stages can draw from worker threads. Every function takes finished numbers (the
tables evaluation.py computes) and a path, and writes one PNG there; the same tables go to CSV for ``dvc plots``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything draws: stages run headless

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from distilflow.numerics import readable_number

TEACHER_COLOUR = "#4c72b0"
STUDENT_COLOUR = "#dd8452"
DPI = 110
# No software/creation stamp in the file, so an unchanged figure is byte-identical across runs.
PNG_METADATA: dict[str, str | None] = {"Software": None}


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, metadata=PNG_METADATA)
    return path


def confusion_matrix(
    actual: Sequence[str], predicted: Sequence[str], labels: Sequence[str], path: Path, title: str
) -> Path:
    """Counts with row-normalised shading: each row shows where that gold class's examples went."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({value for value in [*actual, *predicted] if value not in index})
    if unknown:
        raise ValueError(f"confusion matrix: values {unknown} are not among the labels {list(labels)}")
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for gold, guess in zip(actual, predicted, strict=True):
        counts[index[gold], index[guess]] += 1
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    size = 2.2 + 0.9 * len(labels)
    figure = Figure(figsize=(size + 1.2, size))
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the gold class")
    for row in range(len(labels)):
        for column in range(len(labels)):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(
                column,
                row,
                f"{counts[row, column]}\n{shares[row, column]:.0%}",
                ha="center",
                va="center",
                color=colour,
                fontsize=9,
            )
    axes.set_xticks(range(len(labels)), labels=list(labels), rotation=30 if len(labels) > 2 else 0)
    axes.set_yticks(range(len(labels)), labels=list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(title)
    return _save(figure, path)


def reliability_diagram(table: pd.DataFrame, ece: float, path: Path, title: str) -> Path:
    """Accuracy against confidence per bin, with the bins' share of examples underneath.

    ``table`` is evaluation.calibration_table's: bin_lower, bin_upper, examples, confidence, accuracy.
    """
    figure = Figure(figsize=(5.2, 5.6))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = table[table["examples"] > 0]
    width = float((table["bin_upper"] - table["bin_lower"]).iloc[0]) if len(table) else 0.1
    centres = (filled["bin_lower"] + filled["bin_upper"]) / 2
    top.bar(
        centres,
        filled["accuracy"],
        width=width * 0.95,
        color=TEACHER_COLOUR,
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    # The gap is drawn from the lower to the higher of the two, hatched, so that it reads the same whether the
    # model is over-confident (gap above the bar) or under-confident (gap inside it).
    low = np.minimum(filled["accuracy"], filled["confidence"])
    top.bar(
        centres,
        (filled["confidence"] - filled["accuracy"]).abs(),
        bottom=low,
        width=width * 0.95,
        facecolor="none",
        edgecolor="#c44e52",
        hatch="//",
        linewidth=0.8,
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"{title}\nECE = {ece:.4f}")
    top.legend(loc="upper left", fontsize=8)
    total = max(int(table["examples"].sum()), 1)
    bottom.bar(centres, filled["examples"] / total, width=width * 0.95, color="grey")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("share")
    return _save(figure, path)


def score_scatter(
    gold: Sequence[float],
    predicted: Sequence[float],
    path: Path,
    title: str,
    score_range: tuple[float, float],
    scores: Mapping[str, float],
) -> Path:
    """Predicted against gold similarity with the diagonal; the title carries the correlations."""
    low, high = score_range
    figure = Figure(figsize=(5.2, 5.2))
    axes = figure.subplots()
    axes.scatter(gold, predicted, s=14, alpha=0.6, color=TEACHER_COLOUR, edgecolor="none")
    axes.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    margin = 0.05 * (high - low)
    axes.set_xlim(low - margin, high + margin)
    axes.set_ylim(low - margin, high + margin)
    axes.set_aspect("equal")
    axes.set_xlabel("gold score")
    axes.set_ylabel("predicted score (clipped)")
    described = ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
    axes.set_title(f"{title}\n{described}")
    return _save(figure, path)


def length_buckets(table: pd.DataFrame, metric: str, path: Path, title: str) -> Path:
    """One bar per token-length bucket, labelled with its example count.

    ``table`` is evaluation.length_table's: bucket, max_tokens, examples and the ``metric`` column.
    """
    figure = Figure(figsize=(6.0, 3.8))
    axes = figure.subplots()
    positions = np.arange(len(table))
    bars = axes.bar(positions, table[metric], color=TEACHER_COLOUR)
    _label_bars(axes, bars, [f"n={count}" for count in table["examples"]])
    axes.set_xticks(positions, labels=list(table["bucket"]))
    axes.set_xlabel("tokens per example (after tokenization, incl. special tokens)")
    axes.set_ylabel(metric)
    if metric == "accuracy":
        axes.set_ylim(0, 1.08)
    axes.set_title(title)
    return _save(figure, path)


def _label_bars(axes: Any, bars: Any, labels: Sequence[str]) -> None:
    """One small label just above each bar."""
    for bar, label in zip(bars, labels, strict=True):
        axes.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )


def comparison(panels: Sequence[tuple[str, float, float]], path: Path, title: str) -> Path:
    """Teacher and student side by side, one small panel per measure: (panel title, teacher, student)."""
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.9 * rows))
    axes_grid = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axes, (name, teacher, student) in zip(axes_grid, panels, strict=False):
        bars = axes.bar(["teacher", "student"], [teacher, student], color=[TEACHER_COLOUR, STUDENT_COLOUR])
        _label_bars(axes, bars, [readable_number(bar.get_height(), digits=3) for bar in bars])
        axes.set_title(name, fontsize=9)
        axes.margins(y=0.18)
    for spare in axes_grid[len(panels) :]:
        spare.set_visible(False)
    figure.suptitle(title)
    return _save(figure, path)
