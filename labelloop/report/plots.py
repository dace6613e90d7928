"""Plots of the job report as matplotlib figures, encoded as PNG for the HTML page.

Every function takes the plain values of the report dict (see
:func:`labelloop.report.data.build_report`), tolerates missing or ``None``
fields, and returns ``None`` when it has nothing to draw. Figures are built
with :class:`matplotlib.figure.Figure`, so no pyplot state or global backend
is touched.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

HUMAN_COLOR = "#4c72b0"
MACHINE_COLOR = "#dd8452"
SHARE_COLOR = "#2f2f2f"
TARGET_COLOR = "#c44e52"
GAP_COLOR = "#e6e6e6"

# Class names come from user data. With mathtext on, a name such as "$x$"
# would render as a formula or fail to parse, so the plots turn mathtext off.
PLOT_STYLE: dict[Any, Any] = {
    "text.parse_math": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 9,
    "legend.frameon": False,
}
FIGURE_SIZE = (5.6, 3.8)
MAX_CLASS_LINES = 10
MAX_LEGEND_LABEL = 24

P = ParamSpec("P")
R = TypeVar("R")


def as_number(value: Any) -> float | None:
    """Return ``value`` as a finite float, or ``None`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def figure_png(figure: Figure, *, dpi: int = 120) -> bytes:
    """Encode ``figure`` as PNG bytes.

    Parameters
    ----------
    figure : Figure
        The figure to encode.
    dpi : int, default=120
        Resolution in dots per inch. A ``FIGURE_SIZE`` figure at 120 dpi is
        672 x 456 pixels.

    Returns
    -------
    bytes
        The PNG file.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _styled(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(PLOT_STYLE):
            return function(*args, **kwargs)

    return wrapper


def _round_numbers(rounds: Sequence[dict[str, Any]]) -> list[int]:
    numbers = []
    for position, stats in enumerate(rounds, start=1):
        number = as_number(stats.get("round"))
        numbers.append(int(number) if number is not None else position)
    return numbers


def _series(rounds: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    """Return one float per round, NaN where the value is missing."""
    values = [as_number(stats.get(key)) for stats in rounds]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _round_axis(axes: Axes, numbers: list[int]) -> None:
    axes.set_xlabel("round")
    if len(numbers) <= 20:
        axes.set_xticks(numbers)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(min(numbers) - 0.6, max(numbers) + 0.6)


def _shade_rounds(axes: Axes, numbers: Sequence[int]) -> None:
    for number in numbers:
        axes.axvspan(number - 0.5, number + 0.5, color=GAP_COLOR, zorder=0, lw=0)


def _legend_label(name: str) -> str:
    # Legend entries that start with "_" are hidden by matplotlib.
    label = (
        name if len(name) <= MAX_LEGEND_LABEL else name[: MAX_LEGEND_LABEL - 1] + "…"
    )
    return " " + label if label.startswith("_") else label


def class_thresholds(stats: dict[str, Any]) -> list[float | None]:
    """Return a round's per-class thresholds, ``None`` where nothing is certified."""
    thresholds = stats.get("thresholds")
    if not isinstance(thresholds, list):
        return []
    return [as_number(value) for value in thresholds]


def summary_threshold(stats: dict[str, Any]) -> float | None:
    """Return a round's single threshold: ``threshold``, else the lowest class one."""
    threshold = as_number(stats.get("threshold"))
    if threshold is not None:
        return threshold
    finite = [value for value in class_thresholds(stats) if value is not None]
    return min(finite) if finite else None


def is_class_wise(rounds: Sequence[dict[str, Any]]) -> bool:
    """Return whether any round certified different thresholds for different classes."""
    for stats in rounds:
        finite = {value for value in class_thresholds(stats) if value is not None}
        if len(finite) > 1 or (finite and None in class_thresholds(stats)):
            return True
    return False


def uncertified_rounds(rounds: Sequence[dict[str, Any]]) -> list[int]:
    """Return the numbers of rounds that searched for a threshold and certified none."""
    found = []
    for number, stats in zip(_round_numbers(rounds), rounds, strict=True):
        searched = stats.get("threshold_mode") is not None or "thresholds" in stats
        if searched and summary_threshold(stats) is None:
            found.append(number)
    return found


@_styled
def labels_figure(
    rounds: Sequence[dict[str, Any]], *, n_items: int | None
) -> Figure | None:
    """Draw the labeled items after each round by origin, with their share.

    Parameters
    ----------
    rounds : sequence of dict
        The report's per-round statistics.
    n_items : int or None
        Valid items of the job, the denominator of the labeled share. ``None``
        or 0 leaves the share line out.

    Returns
    -------
    Figure or None
        ``None`` when there is no round.
    """
    if not rounds:
        return None
    numbers = _round_numbers(rounds)
    # Human labels accumulate. Machine labels are those in force after each
    # round, because a certified job's later test may replace the whole set.
    human = np.cumsum(np.nan_to_num(_series(rounds, "human_labeled")))
    machine = np.nan_to_num(_series(rounds, "machine_labeled"))

    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.add_subplot()
    bars_human = axes.bar(numbers, human, color=HUMAN_COLOR, label="human")
    bars_machine = axes.bar(
        numbers, machine, bottom=human, color=MACHINE_COLOR, label="machine"
    )
    axes.set_ylabel("labeled items after the round")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    _round_axis(axes, numbers)
    handles: list[Any] = [bars_human, bars_machine]

    if n_items:
        share = (human + machine) / n_items
        share_axes = axes.twinx()
        (line,) = share_axes.plot(
            numbers,
            share,
            color=SHARE_COLOR,
            marker="o",
            ms=3.5,
            label="labeled share",
        )
        share_axes.set_ylim(0, 1.05)
        share_axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        share_axes.set_ylabel("share of items labeled")
        share_axes.spines["right"].set_visible(True)
        handles.append(line)

    figure.legend(handles=handles, loc="outside lower center", ncols=3)
    axes.set_title("Labeled items by origin")
    return figure


@_styled
def thresholds_figure(
    rounds: Sequence[dict[str, Any]], *, class_names: Sequence[str]
) -> Figure | None:
    """Draw the certified confidence threshold of each round.

    One line when every round used one threshold for all classes. Otherwise one
    line per class, or, with more than ``MAX_CLASS_LINES`` classes, the lowest,
    median and highest class threshold. Rounds that certified nothing are gaps
    in the lines and shaded.

    Parameters
    ----------
    rounds : sequence of dict
        The report's per-round statistics.
    class_names : sequence of str
        Names of the classes, in the order of each round's ``thresholds``.

    Returns
    -------
    Figure or None
        ``None`` when no round searched for a threshold, for example with
        automated labeling off.
    """
    numbers = _round_numbers(rounds)
    gaps = uncertified_rounds(rounds)
    certified = [summary_threshold(stats) for stats in rounds]
    if not gaps and all(value is None for value in certified):
        return None

    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.add_subplot()
    _shade_rounds(axes, gaps)
    handles: list[Any] = []
    drawn: list[float] = []

    if is_class_wise(rounds):
        n_classes = max(len(class_thresholds(stats)) for stats in rounds)
        matrix = np.full((len(rounds), n_classes), np.nan)
        for row, stats in enumerate(rounds):
            for column, value in enumerate(class_thresholds(stats)):
                if value is not None:
                    matrix[row, column] = value
        if n_classes <= MAX_CLASS_LINES:
            colors = matplotlib.colormaps["tab10"]
            for column in range(n_classes):
                name = (
                    str(class_names[column])
                    if column < len(class_names)
                    else f"class {column}"
                )
                (line,) = axes.plot(
                    numbers,
                    matrix[:, column],
                    marker="o",
                    ms=3.5,
                    color=colors(column),
                    label=_legend_label(name),
                )
                handles.append(line)
        else:
            # Rounds where no class is certified stay NaN, without the
            # all-NaN warning of np.nanmax.
            has_value = np.isfinite(matrix).any(axis=1)
            safe = np.where(has_value[:, None], matrix, 0.0)
            summaries = {
                "highest class": np.nanmax(safe, axis=1),
                "median class": np.nanmedian(safe, axis=1),
                "lowest class": np.nanmin(safe, axis=1),
            }
            for (label, values), style in zip(
                summaries.items(), ("--", "-", ":"), strict=True
            ):
                values = np.where(has_value, values, np.nan)
                (line,) = axes.plot(
                    numbers,
                    values,
                    linestyle=style,
                    marker="o",
                    ms=3.5,
                    color=HUMAN_COLOR,
                    label=label,
                )
                handles.append(line)
        drawn = [float(v) for v in matrix[np.isfinite(matrix)]]
        axes.set_title("Certified thresholds per round, by class")
    else:
        values = np.array([np.nan if v is None else v for v in certified], dtype=float)
        (line,) = axes.plot(
            numbers,
            values,
            marker="o",
            color=HUMAN_COLOR,
            label="threshold (all classes)",
        )
        handles.append(line)
        drawn = [float(v) for v in values[np.isfinite(values)]]
        axes.set_title("Certified threshold per round")

    if gaps:
        handles.append(Patch(color=GAP_COLOR, label="nothing certified"))
    low = min(drawn) if drawn else 0.0
    axes.set_ylim(max(0.0, low - 0.05), 1.0)
    axes.set_ylabel("model confidence threshold")
    _round_axis(axes, numbers)
    if not drawn:
        axes.text(
            0.5,
            0.5,
            "no round certified a threshold",
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
    figure.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 4)
    )
    return figure


@_styled
def accuracy_figure(
    rounds: Sequence[dict[str, Any]], *, target_accuracy: float | None
) -> Figure | None:
    """Draw validation accuracy and the certified accuracy against the target.

    The certified accuracy is one minus the round's certified error bound on
    the machine labels it wrote, so it sits at or above the target whenever a
    threshold was certified.

    Parameters
    ----------
    rounds : sequence of dict
        The report's per-round statistics.
    target_accuracy : float or None
        The job's target accuracy; ``None`` leaves the target line out.

    Returns
    -------
    Figure or None
        ``None`` when no round has a validation accuracy or a bound.
    """
    if not rounds:
        return None
    numbers = _round_numbers(rounds)
    validation = _series(rounds, "validation_accuracy")
    certified = 1.0 - _series(rounds, "certified_error_bound")
    if not (np.isfinite(validation).any() or np.isfinite(certified).any()):
        return None

    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.add_subplot()
    gaps = uncertified_rounds(rounds)
    _shade_rounds(axes, gaps)
    axes.plot(
        numbers,
        validation,
        marker="o",
        ms=3.5,
        color=HUMAN_COLOR,
        label="validation accuracy",
    )
    axes.plot(
        numbers,
        certified,
        marker="s",
        ms=3.5,
        color=MACHINE_COLOR,
        label="round's threshold, certified (1 − bound)",
    )
    drawn = [*validation[np.isfinite(validation)], *certified[np.isfinite(certified)]]
    if target_accuracy is not None:
        axes.axhline(
            target_accuracy,
            color=TARGET_COLOR,
            linestyle="--",
            lw=1,
            label=f"target {target_accuracy:.1%}",
        )
        drawn.append(target_accuracy)
    handles, _ = axes.get_legend_handles_labels()
    if gaps:
        handles.append(Patch(color=GAP_COLOR, label="nothing certified"))

    axes.set_ylim(max(0.0, min(drawn) - 0.03), 1.005)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("accuracy")
    _round_axis(axes, numbers)
    figure.legend(handles=handles, loc="outside lower center", ncols=2)
    axes.set_title("Validation accuracy and certified bound per round")
    return figure


@_styled
def cost_figure(cost: dict[str, Any]) -> Figure | None:
    """Draw the human cost of the job next to the cost of labeling all by hand.

    Parameters
    ----------
    cost : dict
        The report's ``cost`` entry.

    Returns
    -------
    Figure or None
        ``None`` when neither cost is known.
    """
    this_job = as_number(cost.get("human_cost"))
    all_human = as_number(cost.get("all_human_cost"))
    if this_job is None and all_human is None:
        return None
    names = ["this job", "all items by hand"]
    values = [this_job or 0.0, all_human or 0.0]

    figure = Figure(figsize=(5.6, 2.4), layout="constrained")
    axes = figure.add_subplot()
    bars = axes.barh(names, values, color=[HUMAN_COLOR, "#9a9a9a"])
    axes.invert_yaxis()
    axes.bar_label(bars, labels=[f"{value:,.2f}" for value in values], padding=3)
    axes.set_xlim(0, max(values) * 1.18 if max(values) > 0 else 1.0)
    axes.set_xlabel("human labeling cost")
    saved = as_number(cost.get("saved_share"))
    title = "Human labeling cost"
    if saved is not None:
        title += f": {saved:.0%} saved"
    axes.set_title(title)
    return figure
