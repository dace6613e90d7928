"""The job file's worker_quality section, gold quotas and the store's new columns."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelloop.config import JobConfig, WorkerQualitySettings, load_job_config
from labelloop.errors import ConfigError
from labelloop.quality import GOLD_ROUNDS, answer_class, class_index, gold_quota
from labelloop.store import JobStore
from labelloop.workforce import SimulatedWorkers

MINIMAL: dict[str, Any] = {
    "job_name": "news-topics",
    "task_type": "text-classification",
    "label_attribute_name": "topic",
    "label_categories": ["world", "sports", "business"],
    "input_manifest": "input.manifest",
    "output_path": "out",
}


def load(folder: Path, **fields: Any) -> JobConfig:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, **fields}), encoding="utf-8")
    return load_job_config(path)


def load_error(folder: Path, **fields: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(folder, **fields)
    return str(caught.value)


def test_settings_defaults_change_nothing(tmp_path: Path) -> None:
    config = load(tmp_path, workers_per_item=3)

    settings = config.worker_quality
    assert settings == WorkerQualitySettings()
    assert settings.gold_label_key is None
    assert settings.min_worker_accuracy is None
    assert settings.min_answers_before_exclusion == 20
    assert settings.adaptive_redundancy is False
    assert (settings.min_answers, settings.max_answers) == (2, None)
    assert settings.confidence == 0.9
    assert config.consolidation == "majority-vote"
    assert config.initial_answers_per_item == 3
    assert config.max_answers_per_item == 3


def test_settings_read_from_file(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        workers_per_item=3,
        consolidation="dawid-skene",
        worker_quality={
            "gold_label_key": "known",
            "gold_per_worker": 12,
            "min_worker_accuracy": 0.6,
            "min_answers_before_exclusion": 30,
            "adaptive_redundancy": True,
            "min_answers": 2,
            "confidence": 0.95,
        },
    )

    settings = config.worker_quality
    assert config.consolidation == "dawid-skene"
    assert settings.gold_label_key == "known"
    assert settings.gold_per_worker == 12
    assert settings.min_worker_accuracy == 0.6
    assert settings.min_answers_before_exclusion == 30
    assert config.initial_answers_per_item == 2
    # max_answers defaults to workers_per_item.
    assert config.max_answers_per_item == 3


def test_max_answers_overrides_workers(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        workers_per_item=2,
        worker_quality={"adaptive_redundancy": True, "max_answers": 5},
    )

    assert config.initial_answers_per_item == 2
    assert config.max_answers_per_item == 5


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"worker_quality": {"min_answers": 3, "max_answers": 2}},
            "max_answers is 2 but min_answers is 3",
        ),
        (
            {"worker_quality": {"adaptive_redundancy": True}},
            "max_answers defaults to workers_per_item=1",
        ),
        (
            {"worker_quality": {"min_worker_accuracy": 1.5}},
            "worker_quality.min_worker_accuracy",
        ),
        (
            {"worker_quality": {"confidence": 0}},
            "worker_quality.confidence",
        ),
        (
            {"worker_quality": {"gold_per_worker": -1}},
            "worker_quality.gold_per_worker",
        ),
        (
            {"worker_quality": {"min_answers_before_exclusion": 0}},
            "worker_quality.min_answers_before_exclusion",
        ),
        (
            {"worker_quality": {"gold_key": "known"}},
            "allowed fields: adaptive_redundancy",
        ),
        ({"consolidation": "average"}, "choose one of: dawid-skene, majority-vote"),
    ],
)
def test_invalid_settings_rejected(
    tmp_path: Path, fields: dict[str, Any], expected: str
) -> None:
    message = load_error(tmp_path, **fields)

    assert expected in message
    assert "Traceback" not in message


def test_max_answers_needs_simulated_workers(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        workers_per_item=2,
        workforce={"error_rates": [0.1, 0.1, 0.2]},
        worker_quality={"adaptive_redundancy": True, "max_answers": 4},
    )

    with pytest.raises(ConfigError) as caught:
        SimulatedWorkers(config=config, class_names=list(config.label_categories))

    assert "max_answers is 4" in str(caught.value)
    assert "has 3 workers" in str(caught.value)


def test_gold_quota_spread_over_rounds() -> None:
    assert GOLD_ROUNDS == 3
    assert [gold_quota(r, 10) for r in range(6)] == [0, 4, 7, 10, 10, 10]
    assert [gold_quota(r, 1) for r in range(4)] == [0, 1, 1, 1]
    assert gold_quota(2, 0) == 0


def test_class_values_resolved() -> None:
    names = ["cat", "dog"]

    assert class_index("dog", names) == 1
    assert class_index(0, names) == 0
    assert class_index(2, names) is None
    assert class_index(True, names) is None
    assert class_index("bird", names) is None
    assert answer_class({"class": 4}) == 4
    assert answer_class({"class": "4"}) == -1
    assert answer_class({"label": 1}) == -1
    assert answer_class(None) == -1


def test_store_adds_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY, item_id INTEGER UNIQUE, "
            "round INTEGER, purpose VARCHAR(20), status VARCHAR(20), "
            "created_at DATETIME)"
        )
        connection.execute(
            "INSERT INTO tasks VALUES (1, 1, 1, 'query', 'open', '2024-01-01 00:00:00')"
        )
    connection.close()

    store = JobStore(f"sqlite:///{path.as_posix()}")
    tasks = store.tasks()
    store.set_required_answers({1: 3})
    again = store.tasks()
    store.close()

    assert tasks[0].required_answers is None
    assert again[0].required_answers == 3
