"""Tables of the report page: rounds, workers, timing, failures and outputs."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from labelloop.report import formatting as fmt
from labelloop.report import plots
from labelloop.report.plots import as_number

MAX_FAILURE_ROWS = 200
MAX_CONFUSION_CLASSES = 20
TIMING_STEPS = ("features", "training", "workforce")


def _threshold_cell(stats: dict[str, Any]) -> str:
    values = plots.class_thresholds(stats)
    finite = [value for value in values if value is not None]
    if plots.summary_threshold(stats) is None:
        searched = stats.get("threshold_mode") is not None or "thresholds" in stats
        return "none certified" if searched else fmt.MISSING
    if len(set(finite)) > 1 or (finite and len(finite) < len(values)):
        classes = f"{len(finite)} of {len(values)} classes"
        return f"{min(finite):.3f} to {max(finite):.3f} ({classes})"
    return fmt.decimal(plots.summary_threshold(stats))


def _stop_cell(stats: dict[str, Any]) -> str:
    parts = []
    reason = fmt.as_dict(stats.get("plan")).get("reason")
    if reason:
        text = fmt.long_text(str(reason).rstrip("."))
        parts.append(f"<b>Human batch:</b> {text}.")
    if stats.get("scan_start") and stats.get("certification_test"):
        start = str(stats["scan_start"])
        if stats.get("pilot_items"):
            start += f" of {stats['pilot_items']} validation items"
        parts.append(f"<b>Scan start chosen by:</b> {fmt.long_text(start)}.")
    alpha = as_number(stats.get("spreading_alpha"))
    if alpha:
        parts.append(
            f"<b>Label spreading:</b> strength {alpha:g} over the neighbor graph."
        )
    if stats.get("stop_reason"):
        parts.append(
            "<b>Why the round stopped:</b> " + fmt.long_text(str(stats["stop_reason"]))
        )
    return " ".join(parts)


def rounds_html(report: dict[str, Any]) -> str:
    """Return the rounds section: one row per round and why it stopped."""
    rounds = fmt.report_rounds(report)
    if not rounds:
        return "<section><h2>Rounds</h2><p>No round has started.</p></section>"
    headers = [
        ("Round", "num"),
        ("Status", ""),
        ("Human", "num"),
        ("Machine", "num"),
        ("Validation items", "num"),
        ("Eligible", "num"),
        ("Threshold mode", ""),
        ("Threshold", "num"),
        ("Validation acc.", "num"),
        ("Bound", "num"),
    ]
    rows = [
        [
            fmt.count(stats.get("round")),
            fmt.escape(stats.get("status")),
            fmt.count(stats.get("human_labeled")),
            fmt.count(stats.get("machine_labeled")),
            fmt.count(stats.get("validation_items")),
            fmt.count(stats.get("eligible_validation_items")),
            fmt.escape(stats.get("threshold_mode")),
            _threshold_cell(stats),
            fmt.percent(stats.get("validation_accuracy")),
            fmt.percent(stats.get("certified_error_bound"), 2),
        ]
        for stats in rounds
    ]
    notes = [_stop_cell(stats) for stats in rounds]
    note = (
        "<p class='fine'>Machine: machine labels in force after the round; a "
        "certified job's test covers every machine label, so a round that certifies "
        "more replaces the whole set. Eligible: the validation items that the "
        "round's threshold was chosen on (for the reference methods, those that no "
        "earlier threshold covered). Bound: the certified error bound of the "
        "round's threshold.</p>"
    )
    table = fmt.table(headers, rows, notes=notes, stack=True)
    return f"<section><h2>Rounds</h2>{table}{note}</section>"


def _confusion_html(worker_id: Any, matrix: Any, class_names: Sequence[str]) -> str:
    """Return one worker's confusion matrix, with true classes as rows."""
    rows = [row for row in fmt.as_list(matrix) if isinstance(row, list)]
    if not rows:
        return ""
    size = len(rows)
    names = [class_names[k] if k < len(class_names) else str(k) for k in range(size)]
    title = f"<p><b>{fmt.escape(worker_id)}</b></p>"

    if size > MAX_CONFUSION_CLASSES:
        diagonal = ", ".join(
            f"{html.escape(names[k])}: "
            f"{fmt.percent(row[k] if k < len(row) else None, 0)}"
            for k, row in enumerate(rows)
        )
        return f"<div>{title}<p class='fine'>Per-class accuracy: {diagonal}</p></div>"

    head = "".join(f"<th class='num'>{html.escape(name)}</th>" for name in names)
    lines = []
    for k, row in enumerate(rows):
        if len(row) != size:
            continue
        cells = []
        for value in row:
            number = as_number(value)
            shade = (
                f" style='background:rgba(76,114,176,{0.55 * number:.2f})'"
                if (number is not None and 0.0 <= number <= 1.0)
                else ""
            )
            cells.append(f"<td class='num'{shade}>{fmt.percent(value, 0)}</td>")
        lines.append(f"<tr><th>{html.escape(names[k])}</th>{''.join(cells)}</tr>")

    table = (
        f"<div class='scroll'><table class='confusion'><thead><tr><th></th>{head}</tr>"
        f"</thead><tbody>{''.join(lines)}</tbody></table></div>"
    )
    return f"<div>{title}{table}</div>"


def workers_html(report: dict[str, Any]) -> str:
    """Return the workers section, with confusion matrices when present."""
    workers = [
        row for row in fmt.as_list(report.get("workers")) if isinstance(row, dict)
    ]
    if not workers:
        return "<section><h2>Workers</h2><p>No worker answered yet.</p></section>"
    columns: list[tuple[str, str, str]] = [
        ("worker_id", "Worker", "key"),
        ("answers", "Answers", "num"),
        ("n_answers", "Answers (consolidation)", "num"),
        ("agreement", "Agreement with the label", "num"),
        ("estimated_accuracy", "Estimated accuracy", "num"),
        ("gold_answers", "Gold answers", "num"),
        ("gold_accuracy", "Gold accuracy", "num"),
        ("excluded", "Excluded", ""),
        ("median_seconds", "Median seconds", "num"),
    ]
    known = {key for key, _, _ in columns} | {"confusion"}
    present = [column for column in columns if any(column[0] in row for row in workers)]
    extras = sorted({key for row in workers for key in row if key not in known})
    present += [(key, key, "") for key in extras]

    rows = []
    for worker in workers:
        cells = []
        for key, _, _ in present:
            value = worker.get(key)
            if key in ("agreement", "estimated_accuracy", "gold_accuracy"):
                cells.append(fmt.percent(value))
            elif key == "excluded":
                cells.append("yes" if value else "no")
            elif key == "median_seconds":
                cells.append(fmt.decimal(value, 1))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                cells.append(fmt.count(value))
            else:
                cells.append(fmt.escape(value))
        rows.append(cells)
    headers = [(label, kind) for _, label, kind in present]
    parts = [
        "<section><h2>Workers</h2>",
        fmt.table(headers, rows, stack=True),
        "<p class='fine'>Agreement: the share of a worker's answers equal to the "
        "consolidated human label of the item.</p>",
    ]

    classes = [str(name) for name in fmt.as_list(report.get("class_names"))]
    matrices = [
        _confusion_html(worker.get("worker_id"), worker.get("confusion"), classes)
        for worker in workers
    ]
    matrices = [matrix for matrix in matrices if matrix]
    if matrices:
        parts.append(
            f"<details><summary>Confusion matrices of {len(matrices)} worker(s): "
            "rows are true classes, columns the answered class</summary>"
            f"<div class='matrices'>{''.join(matrices)}</div></details>"
        )
    parts.append("</section>")
    return "".join(parts)


def timing_html(report: dict[str, Any]) -> str:
    """Return the timing section, empty when the report has no timing."""
    timing = {
        key: as_number(value)
        for key, value in fmt.as_dict(report.get("timing")).items()
    }
    if not timing:
        return ""
    total = timing.get("total")
    steps = [
        *TIMING_STEPS,
        *sorted(key for key in timing if key not in (*TIMING_STEPS, "total")),
    ]
    rows = []
    for step in steps:
        if step not in timing:
            continue
        seconds = timing[step]
        share = seconds / total if seconds is not None and total else None
        rows.append([html.escape(step), fmt.decimal(seconds, 1), fmt.percent(share)])
    if total is not None:
        rows.append(
            ["<b>total</b>", fmt.decimal(total, 1), fmt.percent(1.0 if total else None)]
        )
        features = timing.get("features") or 0.0
        training = timing.get("training") or 0.0
        outside = total - features - training
        rows.append(
            [
                "outside features and training",
                fmt.decimal(outside, 1),
                fmt.percent(outside / total if total else None),
            ]
        )
    headers = [("Step", ""), ("Seconds", "num"), ("Share of total", "num")]
    return f"<section><h2>Timing</h2>{fmt.table(headers, rows)}</section>"


def failures_html(report: dict[str, Any]) -> str:
    """Return the failed manifest lines, the first ``MAX_FAILURE_ROWS``."""
    failures = [
        row for row in fmt.as_list(report.get("failures")) if isinstance(row, dict)
    ]
    if not failures:
        return "<section><h2>Failures</h2><p>No manifest line failed.</p></section>"
    first_failures = failures[:MAX_FAILURE_ROWS]
    rows = [
        [
            fmt.count(row.get("line")),
            fmt.long_text(fmt.plain_text(row.get("reason"))) or fmt.MISSING,
        ]
        for row in first_failures
    ]
    parts = [
        f"<section><h2>Failures ({len(failures):,})</h2>",
        fmt.table([("Line", "num"), ("Reason", "text")], rows),
    ]
    rest = len(failures) - len(first_failures)
    if rest:
        parts.append(
            f"<p class='fine'>{rest:,} more failures are not shown; report.json "
            "lists them all.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def outputs_html(report: dict[str, Any]) -> str:
    """Return the list of output files, empty when there is none."""
    outputs = fmt.as_dict(report.get("outputs"))
    if not outputs:
        return ""
    items = "".join(
        f"<li>{html.escape(str(name))}: <code>{fmt.escape(value)}</code></li>"
        for name, value in outputs.items()
    )
    return f"<section><h2>Outputs</h2><ul class='outputs'>{items}</ul></section>"
