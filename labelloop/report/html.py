"""Render the job report as one self-contained HTML page.

The page embeds its CSS and its plots (PNG as base64 ``data:`` URLs), so it
loads no file and no URL. Every text from the report passes through
:func:`html.escape`, because class names, failure reasons and worker ids come
from user data. Any key of the report may be missing or ``None``.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from labelloop.report import formatting as fmt
from labelloop.report import plots, tables
from labelloop.report.plots import as_number

logger = logging.getLogger(__name__)

COUNTERS = (
    "HumanLabeled",
    "MachineLabeled",
    "TotalLabeled",
    "Unlabeled",
    "FailedNonRetryableError",
)

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f5f6f8;color:#1f2430;
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1120px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.4rem 0;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.6rem 0 .6rem;border-bottom:1px solid #d9dde3;
padding-bottom:.25rem}
p{margin:.5rem 0}
.meta{color:#545b68;margin:0}
.meta span{margin-right:1rem;white-space:nowrap}
.badge{display:inline-block;padding:0 .45rem;border-radius:4px;background:#e3e8f0;
font-weight:600}
.badge.completed{background:#d8f0dd;color:#1d5e2c}
.badge.failed,.badge.stopped{background:#f7dcdc;color:#7d1f1f}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,190px),1fr));
gap:.6rem}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.5rem .75rem}
.card .value{font-size:1.45rem;font-weight:650;font-variant-numeric:tabular-nums}
.card .name{font-size:.8rem;color:#545b68;overflow-wrap:anywhere}
.note{background:#fff7e0;border-left:4px solid #e0b030;padding:.5rem .75rem;
border-radius:4px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;
margin:.5rem 0}
dl.facts dt{color:#545b68}
dl.facts dd{margin:0;font-variant-numeric:tabular-nums}
.plain{font-size:1.05rem}
.fine{font-size:.88rem;color:#3d4350}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,470px),1fr));
gap:1rem}
figure{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:6px;
padding:.5rem}
figure img{display:block;width:100%;height:auto}
figcaption{font-size:.85rem;color:#3d4350;margin-top:.3rem}
.scroll{display:inline-block;max-width:100%;overflow-x:auto;background:#fff;
border:1px solid #dde1e7;border-radius:6px}
table{border-collapse:collapse;font-size:.86rem}
th,td{padding:.35rem .55rem;border-bottom:1px solid #e6e9ee;text-align:left;
vertical-align:top}
th{background:#eef1f5}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.key{white-space:nowrap}
td.text{min-width:16rem;max-width:36rem;overflow-wrap:anywhere}
tr:last-child td{border-bottom:0}
tr.has-note td{border-bottom:0;padding-bottom:.1rem}
tr.note-row td{color:#3d4350;font-size:.82rem;padding-top:0;overflow-wrap:anywhere}
details summary{cursor:pointer}
details[open]>summary .preview{display:none}
code{font-size:.85em;overflow-wrap:anywhere}
ul.outputs{padding-left:1.2rem}
.matrices{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem}
.matrices p{margin:.5rem 0 .2rem}
table.confusion th,table.confusion td{padding:.2rem .45rem}
@media (max-width:600px){main{padding:.6rem}h1{font-size:1.3rem}
.cards{grid-template-columns:1fr;gap:.3rem}
.card{display:flex;align-items:baseline;gap:.7rem;padding:.3rem .6rem}
.card .value{font-size:1.15rem;min-width:4.5rem;text-align:right}
dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.35rem}
.scroll.stacked{display:block}
table.stack,.stack>tbody,.stack>tbody>tr{display:block}
.stack>thead{display:none}
.stack>tbody>tr{border-bottom:2px solid #d0d5dc;padding:.3rem 0}
.stack>tbody>tr.has-note{border-bottom:0}
.stack>tbody>tr>td{display:flex;justify-content:space-between;gap:1rem;
border:0;padding:.12rem .55rem;text-align:right;min-width:0;max-width:none}
.stack>tbody>tr>td::before{content:attr(data-label);color:#545b68;text-align:left}
.stack>tbody>tr.note-row>td{display:block;text-align:left}
.stack>tbody>tr.note-row>td::before{content:none}}
"""


def write_html_report(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as a self-contained HTML page at ``path``.

    Parameters
    ----------
    report : dict
        The report of :func:`labelloop.report.data.build_report`, as written
        to ``report.json``. Missing keys and ``None`` values are shown as
        absent.
    path : Path
        The HTML file to write; its folder is created when missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    logger.info("wrote the HTML report to %s", path)


def render_html(report: dict[str, Any]) -> str:
    """Return the HTML page of ``report``, as :func:`write_html_report` writes it."""
    title = fmt.plain_text(report.get("job_name")) or "labelloop job"
    sections = [
        _header_html(report),
        _summary_html(report),
        _guarantee_html(report),
        _plots_html(report),
        tables.rounds_html(report),
        tables.workers_html(report),
        tables.timing_html(report),
        tables.failures_html(report),
        tables.outputs_html(report),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        "<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{fmt.escape(title)}: labeling report</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        "</body>\n</html>\n"
    )


# Sections


def _header_html(report: dict[str, Any]) -> str:
    status = fmt.plain_text(report.get("status")) or "unknown"
    automated = report.get("automated_labeling")
    parts = [
        f"<span>Task: {fmt.escape(report.get('task_type'))}</span>",
        f"<span>Status: <span class='badge {html.escape(status)}'>"
        f"{html.escape(status)}</span></span>",
        f"<span>Created: {fmt.date(report.get('created'))}</span>",
        f"<span>Finished: {fmt.date(report.get('finished'))}</span>",
    ]
    duration = fmt.duration(report.get("created"), report.get("finished"))
    if duration:
        parts.append(f"<span>Duration: {duration}</span>")
    if isinstance(automated, bool):
        parts.append(f"<span>Automated labeling: {'on' if automated else 'off'}</span>")
    name = fmt.escape(report.get("job_name") or "labelloop job")
    return f"<header><h1>{name}</h1><p class='meta'>{' '.join(parts)}</p></header>"


def _summary_html(report: dict[str, Any]) -> str:
    counters = fmt.as_dict(report.get("counters"))
    names = [*COUNTERS, *(name for name in counters if name not in COUNTERS)]
    cards = [
        f"<div class='card'><div class='value'>{fmt.count(counters.get(name))}</div>"
        f"<div class='name'>{html.escape(str(name))}</div></div>"
        for name in names
    ]
    parts = ["<section><h2>Summary</h2>", f"<div class='cards'>{''.join(cards)}</div>"]

    dataset = fmt.as_dict(report.get("dataset"))
    if dataset:
        parts.append(
            "<p class='fine'>Input manifest "
            f"<code>{fmt.escape(dataset.get('input_manifest'))}</code>: "
            f"{fmt.count(dataset.get('items'))} lines, "
            f"{fmt.count(dataset.get('valid_items'))} valid items, "
            f"{fmt.count(dataset.get('failed_items'))} failed.</p>"
        )
    cost = fmt.as_dict(report.get("cost"))
    if as_number(cost.get("human_cost")) is not None:
        sentence = f"Human labeling cost {fmt.decimal(cost.get('human_cost'), 2)}"
        if as_number(cost.get("all_human_cost")) is not None:
            sentence += (
                f", against {fmt.decimal(cost.get('all_human_cost'), 2)} for labeling "
                "every item by hand"
            )
        if as_number(cost.get("saved_share")) is not None:
            sentence += f": {fmt.percent(cost.get('saved_share'), 0)} saved"
        parts.append(f"<p class='fine'>{sentence}.</p>")
    sources = _sources_sentence(report)
    if sources:
        parts.append(f"<p class='fine'>{html.escape(sources)}</p>")
    classes = [str(name) for name in fmt.as_list(report.get("class_names"))]
    if classes:
        parts.append(
            f"<p class='fine'>Classes ({len(classes)}): "
            f"{html.escape(', '.join(classes))}</p>"
        )
    note = report.get("automated_labeling_note")
    if note:
        parts.append(f"<p class='note'>{html.escape(str(note))}</p>")
    parts.append("</section>")
    return "".join(parts)


#: The report's words for each key of ``human_label_sources``, in this order.
SOURCE_WORDS = (
    ("validation", "drawn at random (the validation sample)"),
    ("query", "chosen by the query strategy"),
    ("remaining", "left over in the last batch, which no test certified"),
    ("gold", "gold items"),
    ("other", "labeled without a task"),
)


def _sources_sentence(report: dict[str, Any]) -> str:
    """Say how the items that humans labeled were chosen, or return ''."""
    sources = fmt.as_dict(report.get("human_label_sources"))
    phrases = [
        f"{fmt.count(sources[key])} {words}"
        for key, words in SOURCE_WORDS
        if as_number(sources.get(key))
    ]
    if not phrases:
        return ""
    return "Human labels by how their items were chosen: " + "; ".join(phrases) + "."


def _plain_guarantee(report: dict[str, Any]) -> str:
    machine = fmt.as_dict(report.get("machine_labels"))
    count = as_number(machine.get("count")) or 0
    bound = as_number(machine.get("certified_error_bound"))
    confidence = as_number(report.get("confidence"))
    target = as_number(report.get("target_accuracy"))
    if not count:
        return (
            "No item was machine-labeled: every label comes from human workers, so "
            "the machine-label guarantee does not apply."
        )
    sentence = f"The job machine-labeled {count:,.0f} items."
    if bound is not None and confidence is not None:
        sentence += (
            f" With probability at least {confidence:.0%}, the error rate of these "
            f"machine labels is at most {bound:.1%}"
        )
        if target is not None:
            sentence += f", and the target allows {1 - target:.1%}"
        sentence += ", under the assumptions below."
    return html.escape(sentence)


def _guarantee_html(report: dict[str, Any]) -> str:
    machine = fmt.as_dict(report.get("machine_labels"))
    interval = fmt.as_list(machine.get("estimated_accuracy_interval"))
    estimate = fmt.percent(machine.get("estimated_accuracy"))
    if len(interval) == 2 and estimate != fmt.MISSING:
        estimate += (
            f" (interval {fmt.percent(interval[0])} to {fmt.percent(interval[1])})"
        )

    facts = [
        ("Target accuracy", fmt.percent(report.get("target_accuracy"))),
        ("Confidence", fmt.percent(report.get("confidence"), 0)),
        ("Machine labels", fmt.count(machine.get("count"))),
        (
            "Certified error bound of machine labels",
            fmt.percent(machine.get("certified_error_bound")),
        ),
        ("Estimated machine-label accuracy (validation)", estimate),
        (
            "Validation accuracy, last round",
            fmt.percent(report.get("validation_accuracy")),
        ),
    ]
    human = fmt.as_dict(report.get("human_labels"))
    if human:
        facts.append(
            (
                "Estimated human-label accuracy (mean posterior of "
                f"{fmt.count(human.get('count'))} consolidated labels)",
                fmt.percent(human.get("estimated_accuracy")),
            )
        )
    measured = fmt.as_dict(report.get("measured"))
    if measured:
        items = fmt.count(measured.get("items_with_true_label"))
        facts += [
            (
                f"Measured machine-label accuracy ({items} true labels known)",
                fmt.percent(measured.get("machine_accuracy")),
            ),
            (
                "Measured human-label accuracy",
                fmt.percent(measured.get("human_accuracy")),
            ),
            (
                "Measured accuracy of all labels",
                fmt.percent(measured.get("labeled_accuracy")),
            ),
        ]

    rows = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{value}</dd>" for name, value in facts
    )
    parts = [
        "<section><h2>Guarantee</h2>",
        f"<p class='plain'>{_plain_guarantee(report)}</p>",
        f"<dl class='facts'>{rows}</dl>",
    ]
    if report.get("guarantee"):
        parts.append(f"<p class='fine'>{html.escape(str(report['guarantee']))}</p>")
    if not measured:
        parts.append(
            "<p class='fine'>True labels are unknown, so no accuracy was measured.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _figure_html(figure: Figure, *, alt: str, caption: str) -> str:
    encoded = base64.b64encode(plots.figure_png(figure)).decode("ascii")
    return (
        f"<figure><img src='data:image/png;base64,{encoded}' alt='{html.escape(alt)}'>"
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _plots_html(report: dict[str, Any]) -> str:
    rounds = fmt.report_rounds(report)
    dataset = fmt.as_dict(report.get("dataset"))
    counters = fmt.as_dict(report.get("counters"))
    n_items = as_number(dataset.get("valid_items"))
    if n_items is None:
        labeled = as_number(counters.get("TotalLabeled"))
        unlabeled = as_number(counters.get("Unlabeled"))
        if labeled is not None and unlabeled is not None:
            n_items = labeled + unlabeled
    gaps = plots.uncertified_rounds(rounds)
    gap_text = ""
    if gaps:
        plural = len(gaps) > 1
        gap_text = (
            f" Round{'s' if plural else ''} {fmt.joined(gaps)} certified no "
            f"threshold, so no machine label came from {'them' if plural else 'it'} "
            "(shaded)."
        )
    blocks = []

    figure = plots.labels_figure(rounds, n_items=int(n_items) if n_items else None)
    if figure is not None:
        blocks.append(
            _figure_html(
                figure,
                alt="Stacked bars of human and machine labels after each round",
                caption="Items labeled by human workers and by the model after "
                "each round, and their share of all items. Machine labels are "
                "those in force: a later certification test may replace them.",
            )
        )

    classes = [str(name) for name in fmt.as_list(report.get("class_names"))]
    figure = plots.thresholds_figure(rounds, class_names=classes)
    if figure is not None:
        blocks.append(
            _figure_html(
                figure,
                alt="Certified confidence thresholds per round",
                caption="The threshold each round's test certified. In a certified "
                "job the machine labels in force are the items above the threshold of "
                "the last round that replaced them." + html.escape(gap_text),
            )
        )
    else:
        blocks.append(
            "<figure><p>No round searched for a confidence threshold, so there is no "
            "threshold plot and no machine label.</p></figure>"
        )

    figure = plots.accuracy_figure(
        rounds, target_accuracy=as_number(report.get("target_accuracy"))
    )
    if figure is not None:
        blocks.append(
            _figure_html(
                figure,
                alt="Validation accuracy and certified accuracy per round",
                caption="Validation accuracy of the cross-fitted models on all "
                "validation items, and one minus the certified error bound of each "
                "round's threshold." + html.escape(gap_text),
            )
        )

    cost = fmt.as_dict(report.get("cost"))
    figure = plots.cost_figure(cost)
    if figure is not None:
        caption = (
            f"{fmt.count(cost.get('workers_per_item'))} worker(s) per item at "
            f"{fmt.decimal(cost.get('human_cost_per_item'), 2)} per answer."
        )
        blocks.append(
            _figure_html(
                figure,
                alt="Human labeling cost against labeling all by hand",
                caption=caption,
            )
        )

    if not blocks:
        return ""
    return (
        f"<section><h2>Plots</h2><div class='plots'>{''.join(blocks)}</div></section>"
    )
