"""A whole text job whose model fine-tunes the encoder, on real TREC questions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import joblib
import numpy as np
import pytest

from labelloop.config import FineTuning, load_job_config
from labelloop.errors import ConfigError
from labelloop.importers import import_trec
from labelloop.loop import run_job
from labelloop.models.text_tuning import FINE_TUNED_MODEL, TRAINABLE_LAYERS

from jobs_support import require_shared_data, write_job


@pytest.fixture(scope="module")
def fine_tuned_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Run a 600-question job with automated labeling and a fine-tuned model."""
    require_shared_data("trec", "train_5500.label")
    folder = tmp_path_factory.mktemp("trec")
    imported = import_trec(folder / "data", limit=600, seed=0)
    job_file = write_job(
        folder,
        job_name="questions",
        task_type="text-classification",
        label_category_file=str(folder / "data" / "class-labels.json"),
        input_manifest=str(imported.manifest),
        model=FINE_TUNED_MODEL,
        # Fewer steps than the default keep the test short; they still learn.
        fine_tuning={"min_steps": 30, "max_length": 32},
        workforce={"type": "simulated", "error_rates": [0.0]},
        automated_labeling={"min_items": 100, "validation_size": 150},
    )
    return run_job(load_job_config(job_file)), folder


def round_stats(folder: Path) -> list[dict]:
    """Return the statistics of the job's rounds, in order."""
    with sqlite3.connect(folder / "out" / "job.db") as connection:
        return [
            json.loads(row[0])
            for row in connection.execute("select stats from rounds order by number")
        ]


def test_fine_tuned_job_labels_every_item(fine_tuned_job: tuple[dict, Path]) -> None:
    report, _ = fine_tuned_job
    counters = report["counters"]

    assert report["status"] == "completed"
    assert counters["HumanLabeled"] + counters["MachineLabeled"] == 600
    assert counters["Unlabeled"] == 0


def test_fine_tuned_rounds_record_fits(fine_tuned_job: tuple[dict, Path]) -> None:
    _, folder = fine_tuned_job
    stats = round_stats(folder)
    fitted_on = [
        s["model_params"]["fine_tuned_on"] for s in stats if "model_params" in s
    ]

    assert fitted_on, "no round trained the fine-tuned classifiers"
    # Classifiers train again only after the labels double, so few distinct fits.
    assert fitted_on == sorted(fitted_on)
    distinct = sorted(set(fitted_on))
    for smaller, larger in zip(distinct, distinct[1:], strict=False):
        assert larger >= 2 * smaller


def test_fine_tuned_scans_start_from_a_pilot(
    fine_tuned_job: tuple[dict, Path],
) -> None:
    _, folder = fine_tuned_job
    with sqlite3.connect(folder / "out" / "job.db") as connection:
        starts = [
            row[0]
            for row in connection.execute(
                "select json_extract(stats, '$.scan_start') from rounds order by number"
            )
        ]

    # The first round too: a fine-tuned network's confidences are no guide.
    assert starts[0] == "pilot"
    assert set(starts) - {None} == {"pilot"}


def test_fine_tuned_model_scores_texts(fine_tuned_job: tuple[dict, Path]) -> None:
    report, _ = fine_tuned_job
    lines = [
        json.loads(line)
        for line in Path(report["outputs"]["manifest"]).read_text("utf-8").splitlines()
    ]
    saved = joblib.load(report["outputs"]["model"])
    texts = [line["source"] for line in lines[:40]]

    probabilities = saved["model"].predict_proba(texts)

    assert probabilities.shape == (40, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # By default both folds train the top layers over one set of frozen layers.
    first, second = saved["model"].classifiers
    assert first.trainable_layers == TRAINABLE_LAYERS == len(first.encoder_)
    assert first.frozen_ is second.frozen_
    card = Path(report["outputs"]["model_card"]).read_text(encoding="utf-8")
    assert FINE_TUNED_MODEL in card
    assert "takes a list of texts" in card


@pytest.mark.parametrize(("value", "expected"), [(None, None), (6, 6)])
def test_trainable_layers_setting_loads(
    tmp_path: Path, value: int | None, expected: int | None
) -> None:
    job_file = one_line_job(
        tmp_path,
        '{"source": "a question"}',
        task_type="text-classification",
        model=FINE_TUNED_MODEL,
        fine_tuning={"trainable_layers": value},
    )

    assert load_job_config(job_file).fine_tuning.trainable_layers == expected
    assert FineTuning().trainable_layers == TRAINABLE_LAYERS


def one_line_job(folder: Path, line: str, **fields: object) -> Path:
    """Write a one-item manifest and a job file over it; return the job file."""
    manifest = folder / "manifest.jsonl"
    manifest.write_text(line + "\n", encoding="utf-8")
    return write_job(
        folder, label_categories=["a", "b"], input_manifest=str(manifest), **fields
    )


@pytest.mark.parametrize(
    ("line", "fields", "message"),
    [
        (
            '{"source-ref": "a.png"}',
            {"task_type": "image-classification", "model": FINE_TUNED_MODEL},
            "needs task_type 'text-classification'",
        ),
        (
            '{"source": "a question"}',
            {"task_type": "text-classification", "fine_tuning": {"epochs": 2}},
            "fine_tuning applies only to model",
        ),
        (
            '{"source": "a question"}',
            {
                "task_type": "text-classification",
                "model": FINE_TUNED_MODEL,
                "fine_tuning": {"epoch": 2},
            },
            r"fine_tuning\.epoch: unknown field.*min_steps",
        ),
        (
            '{"source": "a question"}',
            {
                "task_type": "text-classification",
                "model": FINE_TUNED_MODEL,
                "fine_tuning": {"trainable_layers": 7},
            },
            r"fine_tuning\.trainable_layers: .*less than or equal to 6",
        ),
    ],
)
def test_fine_tuning_settings_rejected(
    tmp_path: Path, line: str, fields: dict, message: str
) -> None:
    job_file = one_line_job(tmp_path, line, **fields)

    with pytest.raises(ConfigError, match=message):
        load_job_config(job_file)


def test_rounds_name_the_fit_that_scored_them(
    fine_tuned_job: tuple[dict, Path],
) -> None:
    _, folder = fine_tuned_job
    scored = [s for s in round_stats(folder) if "scored_by_round" in s]

    assert len(scored) >= 2
    # A round that fits again names itself; the others name the last fit.
    previous = None
    for s in scored:
        fitted_on = s["model_params"]["fine_tuned_on"]
        if previous is None or fitted_on != previous["model_params"]["fine_tuned_on"]:
            assert s["scored_by_round"] == s["round"]
        else:
            assert s["scored_by_round"] == previous["scored_by_round"]
        previous = s
    assert len({s["scored_by_round"] for s in scored}) < len(scored)
