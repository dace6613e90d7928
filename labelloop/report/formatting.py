"""Value formatting and HTML building blocks of the report page.

The formatting functions return escaped HTML. A value that is missing, ``None``
or of an unexpected type shows as ``MISSING``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from labelloop.report.plots import as_number

MISSING = "—"
LONG_TEXT = 240


def plain_text(value: Any) -> str:
    """Return ``value`` as unescaped text, empty for ``None``."""
    return "" if value is None else str(value)


def escape(value: Any) -> str:
    """Return ``value`` as escaped text, ``MISSING`` when it is ``None`` or empty."""
    text = plain_text(value)
    return html.escape(text) if text else MISSING


def as_dict(value: Any) -> dict[str, Any]:
    """Return ``value`` when it is a dict, else an empty dict."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """Return ``value`` when it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def report_rounds(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the per-round dicts of ``report``, skipping entries of other types."""
    return [stats for stats in as_list(report.get("rounds")) if isinstance(stats, dict)]


def percent(value: Any, digits: int = 1) -> str:
    """Format a share in [0, 1] as a percentage with ``digits`` decimals."""
    number = as_number(value)
    return MISSING if number is None else f"{number:.{digits}%}"


def count(value: Any) -> str:
    """Format a count with thousands separators (two decimals if fractional)."""
    number = as_number(value)
    if number is None:
        return escape(value)
    return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"


def decimal(value: Any, digits: int = 3) -> str:
    """Format a number with ``digits`` decimals."""
    number = as_number(value)
    return MISSING if number is None else f"{number:.{digits}f}"


def date(value: Any) -> str:
    """Format an ISO 8601 timestamp to the second."""
    if not isinstance(value, str):
        return MISSING
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return html.escape(value)


def duration(start: Any, end: Any) -> str | None:
    """Return the time from ``start`` to ``end`` (ISO 8601), ``None`` if unknown."""
    try:
        seconds = (
            datetime.fromisoformat(end) - datetime.fromisoformat(start)
        ).total_seconds()
    except (TypeError, ValueError):
        return None
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def joined(numbers: Sequence[int]) -> str:
    """Join numbers as "1, 2 and 3"; ``numbers`` must not be empty."""
    words = [str(number) for number in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def long_text(text: str) -> str:
    """Escape ``text``; fold it into a ``details`` element when it is long."""
    if len(text) <= LONG_TEXT:
        return html.escape(text)
    head = html.escape(text[: LONG_TEXT // 2].rstrip()) + "…"
    return (
        f"<details><summary><span class='preview'>{head}</span></summary>"
        f"{html.escape(text)}</details>"
    )


def table(
    headers: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[str]],
    *,
    notes: Sequence[str] | None = None,
    stack: bool = False,
) -> str:
    """Return a scrollable table; ``headers`` pairs a label with a cell class.

    The cells must already be HTML (escaped text). A non-empty ``notes[i]``
    becomes a full-width row under row ``i``. With ``stack``, narrow screens
    show each row as a list of label and value lines.
    """
    head = "".join(
        f"<th class='{kind}'>{html.escape(label)}</th>" for label, kind in headers
    )
    lines = []
    for position, row in enumerate(rows):
        cells = "".join(
            f"<td class='{kind}' data-label='{html.escape(label)}'>{cell}</td>"
            for (label, kind), cell in zip(headers, row, strict=True)
        )
        note = notes[position] if notes else ""
        row_class = " class='has-note'" if note else ""
        lines.append(f"<tr{row_class}>{cells}</tr>")
        if note:
            lines.append(
                f"<tr class='note-row'><td colspan='{len(headers)}'>{note}</td></tr>"
            )
    return (
        f"<div class='scroll{' stacked' if stack else ''}'>"
        f"<table class='{'stack' if stack else 'flat'}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )
