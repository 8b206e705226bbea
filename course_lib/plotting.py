"""Plotting helpers: loss curves and labelled bar charts, in the course's one style.

Used by every chapter where a picture says more than a table.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt

from course_lib.training import History


def plot_losses(
    histories: Mapping[str, History],
    title: str = "training loss",
    ylabel: str = "loss (nats/token)",
    show_eval: bool = True,
    logy: bool = False,
):
    """One line per run: training loss (thin) and evaluation points (markers)."""
    if not histories:
        raise ValueError("plot_losses needs at least one {name: History}")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, h in histories.items():
        if not isinstance(h, History):
            raise TypeError(f"{name!r} is a {type(h).__name__}, expected a training History")
        (line,) = ax.plot(h.steps, h.loss, lw=1, alpha=0.8, label=f"{name} (train)")
        if show_eval and h.eval:
            ax.plot(h.eval_steps, h.eval, "o--", color=line.get_color(), label=f"{name} (eval)")
    ax.set(xlabel="optimizer step", ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_bars(
    values: Mapping[str, float],
    title: str,
    ylabel: str,
    hlines: Mapping[str, float] | None = None,
    fmt: str = "{:.2f}",
):
    """A bar per entry, its value written on top; optional labelled horizontal lines."""
    if not values:
        raise ValueError("plot_bars needs at least one value")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names, heights = list(values), list(values.values())
    bars = ax.bar(names, heights, color=plt.cm.tab10.colors[: len(names)])
    for b, v in zip(bars, heights):
        ax.text(
            b.get_x() + b.get_width() / 2,
            b.get_height(),
            fmt.format(v),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    for i, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, ls="--", color=plt.cm.Dark2.colors[i % 8], label=label)
    if hlines:
        ax.legend(fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig, ax


def plot_lines(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
):
    """Several y-series over one x axis (e.g. a sweep)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, ys in series.items():
        if len(ys) != len(x):
            raise ValueError(f"series {name!r} has {len(ys)} values but x has {len(x)}")
        ax.plot(x, ys, "o-", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax
