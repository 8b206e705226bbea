"""Tests of course_lib.plotting: the figures build, carry their labels, and bad inputs raise."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from course_lib.plotting import plot_bars, plot_lines, plot_losses
from course_lib.training import History


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(losses, evals=()) -> History:
    h = History(steps=list(range(1, len(losses) + 1)), loss=list(losses))
    h.eval_steps, h.eval = [2 * (i + 1) for i in range(len(evals))], list(evals)
    return h


def test_plot_losses_draws_train_lines_and_eval_markers():
    fig, ax = plot_losses(
        {"full": history([3.0, 2.5, 2.0, 1.8], [2.6, 2.1]), "lora": history([3.0, 2.8])}
    )
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["full (train)", "full (eval)", "lora (train)"], labels
    train, evals = ax.get_lines()[:2]
    assert list(train.get_ydata()) == [3.0, 2.5, 2.0, 1.8] and list(evals.get_xdata()) == [2, 4]
    assert train.get_color() == evals.get_color(), "a run's eval points share its line's colour"
    assert ax.get_xlabel() == "optimizer step" and ax.get_ylabel() == "loss (nats/token)"
    assert ax.get_title() == "training loss" and ax.get_yscale() == "linear"
    assert ax.get_legend() is not None and fig is ax.figure


def test_plot_losses_options():
    _, ax = plot_losses(
        {"a": history([2.0, 1.0], [1.5])}, title="T", ylabel="Y", show_eval=False, logy=True
    )
    assert len(ax.get_lines()) == 1, "show_eval=False draws only the training line"
    assert (ax.get_title(), ax.get_ylabel(), ax.get_yscale()) == ("T", "Y", "log")


def test_plot_bars_writes_each_value_on_its_bar():
    values = {"base": 0.412, "LoRA": 0.8, "full": 0.85}
    _, ax = plot_bars(values, "accuracy", "share correct", hlines={"chance": 1 / 3}, fmt="{:.1%}")
    heights = [p.get_height() for p in ax.patches]
    assert heights == list(values.values()), heights
    assert [t.get_text() for t in ax.texts] == ["41.2%", "80.0%", "85.0%"]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(values)
    assert ax.get_title() == "accuracy" and ax.get_ylabel() == "share correct"
    (chance,) = ax.get_lines()
    assert chance.get_label() == "chance" and chance.get_ydata()[0] == pytest.approx(1 / 3)
    assert ax.get_legend() is not None


def test_plot_bars_without_lines_has_no_legend():
    _, ax = plot_bars({"a": 1.0}, "t", "y")
    assert ax.get_legend() is None and [t.get_text() for t in ax.texts] == ["1.00"]


def test_plot_lines_one_line_per_series():
    _, ax = plot_lines(
        [1, 10, 100],
        {"r=4": [1.0, 0.8, 0.7], "r=8": [1.0, 0.7, 0.6]},
        "sweep",
        "steps",
        "loss",
        logx=True,
    )
    assert [line.get_label() for line in ax.get_lines()] == ["r=4", "r=8"]
    assert list(ax.get_lines()[1].get_ydata()) == [1.0, 0.7, 0.6]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("sweep", "steps", "loss")
    assert ax.get_xscale() == "log"


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: plot_losses({}), ValueError, "at least one"),
        (lambda: plot_losses({"run": [3.0, 2.0]}), TypeError, "History"),
        (lambda: plot_bars({}, "t", "y"), ValueError, "at least one"),
        (lambda: plot_lines([1, 2], {"a": [1.0]}, "t", "x", "y"), ValueError, "has 1 values"),
    ],
)
def test_bad_inputs_are_explained(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value), f"the message should mention {words!r}: {info.value}"
