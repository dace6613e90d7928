"""Tests of the HTML job report: self-contained, escaped, tolerant, readable."""

from __future__ import annotations

import base64
import copy
import io
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from labelloop.report import plots, write_html_report
from labelloop.report.html import render_html
from labelloop.report.tables import MAX_FAILURE_ROWS

# Screenshots go to docs/ only when asked for, so a test run leaves the
# tracked files alone; otherwise they go to a temporary folder.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("LABELLOOP_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "labelloop-screenshots"
)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
COUNTERS = {
    "HumanLabeled": 1210,
    "MachineLabeled": 2690,
    "TotalLabeled": 3900,
    "Unlabeled": 96,
    "FailedNonRetryableError": 4,
}
IMAGE_SOURCE = re.compile(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'")
CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
GUARANTEE = (
    "With probability at least 95%, the error rate of the machine labels is at "
    "most 5.0%. It assumes that the validation sample is exchangeable with the "
    "machine-labeled items and that human labels are correct."
)


def _round(
    number: int,
    *,
    human: int,
    machine: int,
    validation: int,
    eligible: int,
    accuracy: float,
    thresholds: list[float | None],
    bound: float | None,
    mode: str = "class-wise",
    reason: str = "",
) -> dict[str, Any]:
    finite = [t for t in thresholds if t is not None]
    return {
        "round": number,
        "status": "done",
        "plan": {
            "validation": validation,
            "query": human - validation,
            "reason": reason,
        },
        "human_labels_total": human * number,
        "validation_items": validation,
        "query_items": human - validation,
        "pool_items": 4000 - human * number,
        "validation_accuracy": accuracy,
        "delta": 0.05 * 6 / (math.pi**2 * number**2),
        "eligible_validation_items": eligible,
        "threshold_mode": mode,
        "thresholds": thresholds,
        "threshold": min(finite) if finite else None,
        "certified_error_bound": bound,
        "validation_above_threshold": eligible // 2 if finite else 0,
        "validation_errors_above_threshold": 1 if finite else 0,
        "estimated_machine_accuracy": 0.99 if finite else None,
        "stop_reason": "; ".join(
            f"{name}: bound 0.0{61 + k} exceeded 0.0500 with {k + 2} errors among "
            f"the top {90 + k} validation items"
            for k, name in enumerate(CLASSES)
        ),
        "human_labeled": human,
        "machine_labeled": machine,
    }


def text_job_report() -> dict[str, Any]:
    """Return the report of a 4,000-item text job with class-wise thresholds."""
    rounds = [
        _round(
            1,
            human=400,
            machine=1650,
            validation=400,
            eligible=400,
            accuracy=0.871,
            thresholds=[0.91, 0.83, None, 0.95],
            bound=0.046,
            reason="first round: a uniform random sample becomes the validation set",
        ),
        _round(
            2,
            human=250,
            machine=0,
            validation=60,
            eligible=180,
            accuracy=0.884,
            thresholds=[None, None, None, None],
            bound=None,
            reason="60 random validation items and 190 chosen by least_confidence",
        ),
        _round(
            3,
            human=280,
            machine=540,
            validation=70,
            eligible=230,
            accuracy=0.902,
            thresholds=[0.88, 0.79, 0.97, 0.9],
            bound=0.048,
            reason="70 random validation items and 210 chosen by least_confidence",
        ),
        _round(
            4,
            human=280,
            machine=500,
            validation=70,
            eligible=260,
            accuracy=0.915,
            thresholds=[0.86, 0.78, 0.95, 0.89],
            bound=0.049,
            reason="70 random validation items and 210 chosen by least_confidence",
        ),
    ]
    return {
        "job_name": "ag-news-slice",
        "task_type": "text-classification",
        "status": "completed",
        "created": "2026-12-04T09:00:00.120000",
        "finished": "2026-12-04T10:12:31.500000",
        "class_names": list(CLASSES),
        "dataset": {
            "input_manifest": "/data/ag_news/manifest.jsonl",
            "items": 4000,
            "valid_items": 3996,
            "failed_items": 4,
        },
        "counters": dict(COUNTERS),
        "target_accuracy": 0.95,
        "confidence": 0.95,
        "automated_labeling": True,
        "automated_labeling_note": None,
        "guarantee": GUARANTEE,
        "machine_labels": {
            "count": 2690,
            "certified_error_bound": 0.0472,
            "estimated_accuracy": 0.987,
            "estimated_accuracy_interval": [0.962, 0.997],
        },
        "measured": {
            "machine_accuracy": 0.979,
            "human_accuracy": 0.962,
            "labeled_accuracy": 0.974,
            "items_with_true_label": 3996,
        },
        "validation_accuracy": 0.915,
        "rounds": rounds,
        "workers": [
            {
                "worker_id": f"worker-{k}",
                "answers": 800 + 20 * k,
                "agreement": 0.93 + 0.02 * k,
                "median_seconds": 7.5 + k,
                "estimated_accuracy": 0.9 + 0.03 * k,
                "n_answers": 800 + 20 * k,
                "confusion": [
                    [0.9 if i == j else 0.1 / 3 for j in range(4)] for i in range(4)
                ],
            }
            for k in range(3)
        ],
        "cost": {
            "human_cost_per_item": 0.036,
            "workers_per_item": 3,
            "human_cost": 130.68,
            "all_human_cost": 431.57,
            "saved_share": 0.6972,
        },
        "timing": {
            "features": 80.0,
            "workforce": 2.0,
            "training": 90.0,
            "total": 200.0,
        },
        "failures": [
            {
                "line": 17,
                "reason": "line 17: missing field 'source' in the JSON object",
            },
            {"line": 905, "reason": "line 905: the line is not valid JSON"},
        ],
        "outputs": {
            "manifest": "/jobs/ag/manifests/output/output.manifest",
            "report_html": "/jobs/ag/report/report.html",
        },
    }


def automated_off_report() -> dict[str, Any]:
    """Return the report of a job with automated labeling off: no thresholds."""
    report = text_job_report()
    report["automated_labeling"] = False
    report["automated_labeling_note"] = (
        "automated labeling is off in the job file; humans labeled every item"
    )
    report["counters"] = {**COUNTERS, "MachineLabeled": 0, "HumanLabeled": 3900}
    report["machine_labels"] = {
        "count": 0,
        "certified_error_bound": None,
        "estimated_accuracy": None,
        "estimated_accuracy_interval": None,
    }
    report["validation_accuracy"] = None
    report["rounds"] = [
        {
            "round": number,
            "status": "done",
            "human_labels_total": 1300 * number,
            "validation_items": 0,
            "query_items": 1300 * number,
            "pool_items": 3996 - 1300 * number,
            "machine_labeled": 0,
            "stop_reason": "no machine labeling this round: automated labeling is off",
            "human_labeled": 1300,
        }
        for number in (1, 2, 3)
    ]
    report["cost"] = {**report["cost"], "human_cost": 421.2, "saved_share": 0.024}
    return report


def _page(report: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "report" / "report.html"
    write_html_report(report, path)
    return path.read_text(encoding="utf-8")


def _images(page: str) -> list[Image.Image]:
    images = []
    for encoded in IMAGE_SOURCE.findall(page):
        image = Image.open(io.BytesIO(base64.b64decode(encoded, validate=True)))
        image.load()
        images.append(image)
    return images


def test_page_is_self_contained(tmp_path: Path) -> None:
    page = _page(text_job_report(), tmp_path)

    references = re.findall(r"""(?:src|href)\s*=\s*['"]?([^'"\s>]+)""", page, re.I)
    assert references, "the page should embed its plots"
    for reference in references:
        assert reference.startswith("data:image/png;base64,"), reference
    assert "http://" not in page
    assert "https://" not in page
    assert "<link" not in page.lower()
    assert "<script" not in page.lower()
    assert "@import" not in page
    assert "url(" not in page


def test_page_plots_decode_as_png(tmp_path: Path) -> None:
    page = _page(text_job_report(), tmp_path)

    images = _images(page)

    assert len(images) == 4
    for image in images:
        assert image.format == "PNG"
        assert image.width >= 600
        assert image.height >= 200
    assert page.count("<img ") == 4


def test_page_shows_counters(tmp_path: Path) -> None:
    page = _page(text_job_report(), tmp_path)

    for name, value in COUNTERS.items():
        card = re.search(
            rf"<div class='value'>([^<]*)</div><div class='name'>{name}</div>", page
        )
        assert card is not None, name
        assert card.group(1) == f"{value:,}"


def test_page_shows_label_sources(tmp_path: Path) -> None:
    report = text_job_report()
    report["human_label_sources"] = {
        "validation": 700,
        "query": 410,
        "remaining": 100,
        "gold": 0,
    }
    page = _page(report, tmp_path)

    assert (
        "Human labels by how their items were chosen: 700 drawn at random (the "
        "validation sample); 410 chosen by the query strategy; 100 left over in "
        "the last batch, which no test certified."
    ) in page
    assert "gold items" not in page

    report["human_label_sources"] = {"validation": "many", "query": None}
    assert "Human labels by how" not in _page(report, tmp_path)


def test_page_escapes_user_text(tmp_path: Path) -> None:
    report = text_job_report()
    attack = "<script>alert(1)</script>"
    report["job_name"] = f"job {attack}"
    report["class_names"] = [attack, r"$\alpha_{bad$", "_hidden", "Sci/Tech"]
    report["failures"][0]["reason"] = f"line 17: bad value {attack}"
    report["workers"][0]["worker_id"] = "<b onclick='x()'>w</b>"
    report["rounds"][0]["plan"]["reason"] = attack
    report["rounds"][0]["stop_reason"] = attack

    page = _page(report, tmp_path)

    assert "<script" not in page.lower()
    assert "<b onclick" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "line 17: bad value &lt;script&gt;" in page
    assert "&lt;b onclick=&#x27;x()&#x27;&gt;w&lt;/b&gt;" in page
    assert len(_images(page)) == 4


def test_page_automated_off_renders(tmp_path: Path) -> None:
    report = automated_off_report()

    page = _page(report, tmp_path)

    assert report["automated_labeling_note"] in page
    assert "No round searched for a confidence threshold" in page
    assert "the machine-label guarantee does not apply" in page
    assert "no machine labeling this round: automated labeling is off" in page
    # Labels per round and cost: no threshold and no validation accuracy to draw.
    assert len(_images(page)) == 2


def test_page_empty_report_renders() -> None:
    page = render_html({})

    assert "<h1>labelloop job</h1>" in page
    assert "No round has started." in page
    assert "No worker answered yet." in page
    assert _images(page) == []


def test_page_none_values_render(tmp_path: Path) -> None:
    report = {key: None for key in text_job_report()}
    report["rounds"] = [{"round": 1, "status": "collecting", "plan": None}]
    report["counters"] = {name: None for name in COUNTERS}
    report["timing"] = {"features": None, "total": None}

    page = _page(report, tmp_path)

    assert "No manifest line failed." in page
    assert "<h2>Rounds</h2>" in page
    assert "HumanLabeled" in page


def test_page_running_job_renders(tmp_path: Path) -> None:
    report = text_job_report()
    report["status"] = "running"
    report["finished"] = None
    del report["outputs"]
    report["rounds"].append(
        {
            "round": 5,
            "status": "collecting",
            "plan": {"validation": 30, "query": 120, "reason": "30 random validation"},
        }
    )

    page = _page(report, tmp_path)

    assert "Duration" not in page
    assert "<h2>Outputs</h2>" not in page
    assert "<b>Human batch:</b> 30 random validation." in page
    assert len(_images(page)) == 4


def test_page_caps_failure_rows(tmp_path: Path) -> None:
    report = text_job_report()
    report["failures"] = [
        {"line": line, "reason": f"line {line}: the line is not valid JSON"}
        for line in range(1, 251)
    ]

    page = _page(report, tmp_path)

    assert page.count("the line is not valid JSON") == MAX_FAILURE_ROWS
    assert "line 200: the line is not valid JSON" in page
    assert "line 201: the line is not valid JSON" not in page
    assert "50 more failures are not shown" in page
    assert "<h2>Failures (250)</h2>" in page


def test_page_shows_worker_quality(tmp_path: Path) -> None:
    page = _page(text_job_report(), tmp_path)

    assert "Estimated accuracy" in page
    assert "Answers (consolidation)" in page
    assert "Confusion matrices of 3 worker(s)" in page
    assert page.count("<table class='confusion'>") == 3
    assert "96.0%" in page  # estimated accuracy of worker-2


def test_page_timing_outside_share(tmp_path: Path) -> None:
    page = _page(text_job_report(), tmp_path)

    row = re.search(
        r"outside features and training</td>"
        r"<td class='num' data-label='Seconds'>([^<]*)</td>"
        r"<td class='num' data-label='Share of total'>([^<]*)</td>",
        page,
    )
    assert row is not None
    assert row.group(1) == "30.0"
    assert row.group(2) == "15.0%"


def test_page_names_uncertified_rounds(tmp_path: Path) -> None:
    page = _page(text_job_report(), tmp_path)

    assert "Round 2 certified no threshold" in page
    assert "3 of 4 classes" in page
    assert "none certified" in page


def test_thresholds_figure_class_wise_lines() -> None:
    rounds = text_job_report()["rounds"]

    figure = plots.thresholds_figure(rounds, class_names=CLASSES)

    assert figure is not None
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == CLASSES
    business = np.asarray(lines[2].get_ydata(), dtype=float)
    assert np.isnan(business[0])
    assert np.isnan(business[1])
    assert business[2] == pytest.approx(0.97)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "nothing certified" in legend


def test_thresholds_figure_global_line() -> None:
    rounds = copy.deepcopy(text_job_report()["rounds"])
    for stats in rounds:
        value = stats["threshold"]
        stats["threshold_mode"] = "global"
        stats["thresholds"] = [value] * len(CLASSES)

    figure = plots.thresholds_figure(rounds, class_names=CLASSES)

    assert figure is not None
    (line,) = figure.axes[0].get_lines()
    values = np.asarray(line.get_ydata(), dtype=float)
    assert values[0] == pytest.approx(0.83)
    assert np.isnan(values[1])
    assert values[3] == pytest.approx(0.78)


def test_thresholds_figure_many_classes() -> None:
    names = [f"class-{k}" for k in range(15)]
    rounds = [
        {"round": 1, "threshold_mode": "class-wise", "thresholds": [None] * 15},
        {
            "round": 2,
            "threshold_mode": "class-wise",
            "thresholds": [0.7 + 0.01 * k for k in range(15)],
        },
    ]

    figure = plots.thresholds_figure(rounds, class_names=names)

    assert figure is not None
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["highest class", "median class", "lowest class"]
    assert figure.axes[0].get_lines()[2].get_ydata()[1] == pytest.approx(0.7)


def test_thresholds_figure_none_without_search() -> None:
    rounds = automated_off_report()["rounds"]

    assert plots.thresholds_figure(rounds, class_names=CLASSES) is None
    assert plots.accuracy_figure(rounds, target_accuracy=0.95) is None


def test_report_page_in_chromium(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    path = tmp_path / "report.html"
    write_html_report(text_job_report(), path)

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(path.as_uri())
            widths = page.evaluate(
                "[...document.images].map(image => image.naturalWidth)"
            )
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)

            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(path.as_uri())
            scroll_width = phone.evaluate("document.documentElement.scrollWidth")
        finally:
            browser.close()

    assert len(widths) == 4
    assert all(width > 0 for width in widths)
    assert scroll_width <= 390


def test_thresholds_figure_odd_class_names() -> None:
    names = [r"$\alpha_{bad$", "_hidden", "x" * 60, "Sci/Tech"]
    rounds = text_job_report()["rounds"]

    figure = plots.thresholds_figure(rounds, class_names=names)

    assert figure is not None
    png = plots.figure_png(figure)
    assert png.startswith(b"\x89PNG")
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[0] == r"$\alpha_{bad$"
    assert legend[1] == " _hidden"
    assert len(legend[2]) == plots.MAX_LEGEND_LABEL
    assert len(legend) == 5


def test_page_wrong_types_render(tmp_path: Path) -> None:
    report = text_job_report()
    report["rounds"][0]["thresholds"] = ["high", None, {"x": 1}, 0.9]
    report["rounds"][1]["validation_accuracy"] = "n/a"
    report["rounds"].append("not a round")
    report["counters"]["Unlabeled"] = "<i>many</i>"
    report["workers"] = {"worker-0": {}}
    report["timing"] = {"total": "slow", "features": float("nan")}
    report["machine_labels"]["estimated_accuracy_interval"] = "wide"
    report["failures"].append("line 3 failed")

    page = _page(report, tmp_path)

    assert "&lt;i&gt;many&lt;/i&gt;" in page
    assert "No worker answered yet." in page
    assert "<h2>Failures (2)</h2>" in page
    assert len(_images(page)) == 4
