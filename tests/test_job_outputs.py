"""Whole jobs on real data: the output manifest, model, report and worker responses."""

from __future__ import annotations

import json
import re
import sqlite3
from itertools import pairwise
from pathlib import Path

import joblib
import numpy as np
import pytest

from labelloop.certify import clopper_pearson_upper
from labelloop.config import load_job_config
from labelloop.demo import prepare_demo
from labelloop.features.text import load_minilm
from labelloop.importers import import_ag_news
from labelloop.loop import RETUNE_GROWTH, run_job
from labelloop.models.heads import C_GRID
from labelloop.models.propagation import ALPHA_GRID

from jobs_support import require_shared_data, write_job

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def digits_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Run the bundled digits demo job once: 1,797 images, automated labeling."""
    folder = tmp_path_factory.mktemp("digits")
    job_file = prepare_demo(folder)
    report = run_job(load_job_config(job_file))
    return report, job_file


def test_digits_job_labels_every_item(digits_job: tuple[dict, Path]) -> None:
    report, _ = digits_job
    counters = report["counters"]
    assert counters["TotalLabeled"] == 1797
    assert counters["Unlabeled"] == 0
    assert counters["HumanLabeled"] + counters["MachineLabeled"] == 1797
    assert counters["MachineLabeled"] > 0
    assert report["status"] == "completed"


def test_label_sources_match_plans(digits_job: tuple[dict, Path]) -> None:
    report, job_file = digits_job
    sources = report["human_label_sources"]
    assert report["counters"]["Expired"] == 0
    assert sum(sources.values()) == report["counters"]["HumanLabeled"]

    # No task expired, so every item a round posted has a human label.
    plans = [entry["plan"] for entry in report["rounds"]]
    assert sources["validation"] == sum(plan["validation"] for plan in plans)
    last = [plan for plan in plans if plan["remaining"]]
    assert len(last) == 1
    assert sources["remaining"] == last[0]["query"]
    assert sources["remaining"] > 0
    assert sources["query"] == sum(
        plan["query"] for plan in plans if not plan["remaining"]
    )

    page = load_job_config(job_file).output_path / "report" / "report.html"
    text = page.read_text(encoding="utf-8")
    assert (
        f"Human labels by how their items were chosen: "
        f"{sources['validation']:,} drawn at random (the validation sample)"
    ) in text


def test_digits_machine_labels_meet_target(digits_job: tuple[dict, Path]) -> None:
    report, _ = digits_job
    assert report["measured"]["machine_accuracy"] >= 0.95
    assert report["machine_labels"]["certified_error_bound"] <= 0.05
    assert report["measured"]["human_accuracy"] == 1.0


def test_image_output_manifest_fields(digits_job: tuple[dict, Path]) -> None:
    report, _ = digits_job
    input_lines = read_jsonl(Path(report["dataset"]["input_manifest"]))
    output_lines = read_jsonl(Path(report["outputs"]["manifest"]))
    assert len(output_lines) == len(input_lines)
    origins = set()
    for source, line in zip(input_lines, output_lines, strict=True):
        for key, value in source.items():
            assert line[key] == value
        assert isinstance(line["digit"], int)
        metadata = line["digit-metadata"]
        assert set(metadata) == {
            "class-name",
            "class-map",
            "confidence",
            "type",
            "job-name",
            "human-annotated",
            "creation-date",
        }
        assert metadata["class-name"] == str(line["digit"])
        assert metadata["class-map"][str(line["digit"])] == metadata["class-name"]
        assert 0.0 <= metadata["confidence"] <= 1.0
        assert metadata["type"] == "groundtruth/image-classification"
        assert metadata["job-name"] == "labeling-job/digits-demo"
        assert metadata["human-annotated"] in ("yes", "no")
        assert DATE.match(metadata["creation-date"])
        origins.add(metadata["human-annotated"])
    assert origins == {"yes", "no"}


def test_digits_model_and_card_written(digits_job: tuple[dict, Path]) -> None:
    report, _ = digits_job
    saved = joblib.load(report["outputs"]["model"])
    assert saved["class_names"] == [str(d) for d in range(10)]
    database = Path(report["outputs"]["manifest"]).parents[2] / "job.db"
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "select vector from features where extractor = ? limit 50",
            (saved["features"],),
        ).fetchall()
    features = np.stack([np.frombuffer(row[0], dtype=np.float32) for row in rows])
    probabilities = saved["model"].predict_proba(features)
    assert probabilities.shape == (50, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    card = Path(report["outputs"]["model_card"]).read_text(encoding="utf-8")
    assert "Validation accuracy" in card
    alphas = [e["spreading_alpha"] for e in report["rounds"] if "spreading_alpha" in e]
    assert alphas[-1] > 0, "the digits job is expected to spread"
    assert f"label spreading at strength {alphas[-1]:g}" in card
    assert Path(report["outputs"]["report_html"]).stat().st_size > 0


def test_digits_worker_responses_written(digits_job: tuple[dict, Path]) -> None:
    report, _ = digits_job
    rows = read_jsonl(Path(report["outputs"]["worker_responses"]))
    assert len(rows) == report["counters"]["HumanLabeled"]
    assert {row["worker-id"] for row in rows} == {"simulated-1"}
    assert all(row["class-name"] == str(row["class"]) for row in rows)


def test_text_output_manifest_fields(tmp_path: Path) -> None:
    require_shared_data("ag_news", "test.csv")
    imported = import_ag_news(tmp_path / "data", limit=60, seed=1)
    job_file = write_job(
        tmp_path,
        job_name="news",
        task_type="text-classification",
        label_category_file=str(tmp_path / "data" / "class-labels.json"),
        input_manifest=str(imported.manifest),
        workers_per_item=3,
        workforce={"type": "simulated", "error_rates": [0.0, 0.0, 0.5]},
        automated_labeling={"enabled": False},
    )
    report = run_job(load_job_config(job_file))

    assert report["counters"]["HumanLabeled"] == 60
    assert report["counters"]["MachineLabeled"] == 0
    assert "humans labeled every item" in report["automated_labeling_note"]
    lines = read_jsonl(Path(report["outputs"]["manifest"]))
    assert len(lines) == 60
    class_names = imported.class_names
    for line in lines:
        assert isinstance(line["source"], str)
        metadata = line["category-metadata"]
        assert metadata["type"] == "groundtruth/text-classification"
        assert metadata["human-annotated"] == "yes"
        assert metadata["class-name"] == class_names[line["category"]]
        assert metadata["job-name"] == "labeling-job/news"
        assert DATE.match(metadata["creation-date"])
        # Two of three workers always answer the truth, so the majority does.
        assert metadata["class-name"] == line["true-label"]
        assert metadata["confidence"] >= 2 / 3 - 1e-9
    responses = read_jsonl(Path(report["outputs"]["worker_responses"]))
    assert len(responses) == 180

    # The saved model scores new text from the embedder plus the saved topics.
    saved = joblib.load(report["outputs"]["model"])
    assert saved["features"] == "text-minilm-l6-v2+tfidf-lsa128"
    texts = [line["source"] for line in lines]
    embedded = load_minilm().encode(texts, normalize_embeddings=True)
    vectors = np.hstack([embedded, saved["corpus_features"].transform(texts)])
    predicted = saved["model"].predict_proba(vectors).argmax(axis=1)
    assert (predicted == np.array([line["category"] for line in lines])).mean() > 0.9


def test_error_budget_spent_only_by_tests_that_ran(
    digits_job: tuple[dict, Path],
) -> None:
    report, _ = digits_job
    stats = [entry for entry in report["rounds"] if "certification_test" in entry]
    tested = [entry for entry in stats if entry["certification_test"]]

    assert tested, "no round ran a certification test"
    assert [entry["certification_test"] for entry in tested] == list(
        range(1, len(tested) + 1)
    )
    for entry in stats:
        if not entry["certification_test"]:
            assert entry["delta"] == 0.0
            assert not entry["machine_labels_replaced"]
    assert sum(entry["delta"] for entry in stats) <= 0.05


def test_machine_labels_come_from_one_test(digits_job: tuple[dict, Path]) -> None:
    report, _ = digits_job
    database = Path(report["outputs"]["manifest"]).parents[2] / "job.db"
    with sqlite3.connect(database) as connection:
        rounds = connection.execute(
            "select distinct round from labels where origin = 'machine'"
        ).fetchall()

    assert len(rounds) == 1
    (source,) = (entry for entry in report["rounds"] if entry["round"] == rounds[0][0])
    assert source["machine_labels_replaced"]
    assert source["certification_test"]
    assert source["certified_error_bound"] <= 0.05
    assert report["machine_labels"]["certified_error_bound"] == pytest.approx(
        source["certified_error_bound"]
    )

    # The bound follows from the certifying items alone, not the pilot's.
    assert source["threshold_mode"] == "global"
    assert source["certifying_above_threshold"] <= source["validation_above_threshold"]
    assert clopper_pearson_upper(
        source["certifying_errors_above_threshold"],
        source["certifying_above_threshold"],
        source["delta"],
    ) == pytest.approx(source["certified_error_bound"])

    # Later rounds keep that set, less the items drawn for validation since.
    later = [entry for entry in report["rounds"] if entry["round"] > source["round"]]
    in_force = [source["machine_labeled"]] + [e["machine_labeled"] for e in later]
    assert in_force == sorted(in_force, reverse=True)
    assert in_force[-1] == report["counters"]["MachineLabeled"]
    for entry in later:
        assert not entry["machine_labels_replaced"]
        if entry.get("certification_test"):
            assert "stay in force" in entry["stop_reason"]


def test_pilot_skipped_only_in_first_round(
    digits_job: tuple[dict, Path],
) -> None:
    report, job_file = digits_job
    scanned = [entry for entry in report["rounds"] if "scan_start" in entry]
    assert scanned, "no round recorded where its scan started"
    for entry in scanned[1:]:
        assert entry["scan_start"] == "pilot"
        assert 0 < entry["pilot_items"] <= entry["eligible_validation_items"] / 3
    # The first scan starts where the model's confidences predict it passes,
    # so every validation item certifies.
    first = scanned[0]
    assert first["round"] == 1
    assert first["certification_test"] == 1
    assert first["scan_start"] == "model confidences"
    page = load_job_config(job_file).output_path / "report" / "report.html"
    text = page.read_text(encoding="utf-8")
    assert "Scan start chosen by:</b> model confidences." in text
    assert any(entry.get("certification_test") for entry in scanned[1:])
    assert "Scan start chosen by:</b> pilot of " in text


def test_hyperparameters_chosen_again_only_after_growth(
    digits_job: tuple[dict, Path],
) -> None:
    report, _ = digits_job
    trained = [entry for entry in report["rounds"] if entry.get("model_params")]
    assert trained, "no round recorded its model's hyperparameters"
    assert trained[0]["model_params"]["C"] in C_GRID
    assert trained[0]["spreading_alpha"] in ALPHA_GRID
    for previous, entry in pairwise(trained):
        labels = entry["validation_items"] + entry["query_items"]
        if labels < RETUNE_GROWTH * previous["model_params_labels"]:
            assert entry["model_params"] == previous["model_params"]
            assert entry["spreading_alpha"] == previous["spreading_alpha"]
            assert entry["model_params_labels"] == previous["model_params_labels"]
        else:
            assert entry["model_params_labels"] == labels
