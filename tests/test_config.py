"""Tests of the YAML job file: valid files load, invalid ones name field and value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelloop.config import (
    AutomatedLabeling,
    JobConfig,
    SimulatedWorkforce,
    TaskType,
    WebWorkforce,
    load_job_config,
    parse_job_config,
)
from labelloop.errors import ConfigError, LabelloopError

MINIMAL: dict[str, Any] = {
    "job_name": "news-topics",
    "task_type": "text-classification",
    "label_attribute_name": "topic",
    "label_categories": ["world", "sports", "business"],
    "input_manifest": "data/input.manifest",
    "output_path": "out",
}

GT_CATEGORIES = {
    "document-version": "2018-11-28",
    "labels": [{"label": "cat"}, {"label": "dog"}, {"label": "bird"}],
}


def write_job(folder: Path, fields: dict[str, Any]) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    return path


def config_error(folder: Path, fields: Any) -> str:
    """Load ``fields`` as a job file and return the ConfigError message."""
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(fields), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_job_config(path)
    # No chained exception that would print a second traceback.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return str(error)


def assert_no_noise(message: str) -> None:
    assert "Traceback" not in message
    assert "errors.pydantic.dev" not in message
    assert "Value error," not in message
    assert "[type=" not in message


def test_minimal_job_file_loads(tmp_path: Path) -> None:
    config = load_job_config(write_job(tmp_path, MINIMAL))

    assert isinstance(config, JobConfig)
    assert config.job_name == "news-topics"
    assert config.task_type is TaskType.TEXT_CLASSIFICATION
    assert config.task_type.media == "text"
    assert config.label_categories == ("world", "sports", "business")
    assert isinstance(config.workforce, SimulatedWorkforce)
    assert config.workforce.error_rates == (0.0,)
    assert config.automated_labeling == AutomatedLabeling()
    assert config.workers_per_item == 1


def test_relative_paths_resolve_to_job_folder(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    config = load_job_config(write_job(folder, MINIMAL))

    assert config.input_manifest == (folder / "data/input.manifest").resolve()
    assert config.output_path == (folder / "out").resolve()
    assert config.input_manifest.is_absolute()
    assert config.database == f"sqlite:///{(folder / 'out' / 'job.db').as_posix()}"


def test_absolute_paths_stay_unchanged(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "input.manifest"
    config = load_job_config(
        write_job(tmp_path, {**MINIMAL, "input_manifest": str(elsewhere)})
    )

    assert config.input_manifest == elsewhere


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_job_config(write_job(tmp_path, MINIMAL))

    with pytest.raises(ValueError, match="frozen"):
        config.job_name = "other"  # type: ignore[misc]


def test_workforce_type_defaults_to_simulated(tmp_path: Path) -> None:
    fields = {**MINIMAL, "workforce": {"error_rates": [0.1, 0.2]}}
    config = load_job_config(write_job(tmp_path, fields))

    assert isinstance(config.workforce, SimulatedWorkforce)
    assert config.workforce.error_rates == (0.1, 0.2)


def test_web_workforce_selected_by_type(tmp_path: Path) -> None:
    fields = {**MINIMAL, "workforce": {"type": "web", "poll_seconds": 0.5}}
    config = load_job_config(write_job(tmp_path, fields))

    assert isinstance(config.workforce, WebWorkforce)
    assert config.workforce.poll_seconds == 0.5


def test_missing_required_field_named(tmp_path: Path) -> None:
    fields = {key: value for key, value in MINIMAL.items() if key != "task_type"}
    message = config_error(tmp_path, fields)

    assert "task_type: missing (required field)" in message
    assert "job.yaml" in message
    assert_no_noise(message)


def test_unknown_field_lists_allowed(tmp_path: Path) -> None:
    message = config_error(tmp_path, {**MINIMAL, "colour": "red"})

    assert "colour: unknown field" in message
    assert "allowed fields:" in message
    assert "label_attribute_name" in message
    assert "label_category_file" in message
    assert_no_noise(message)


def test_unknown_nested_field_named(tmp_path: Path) -> None:
    fields = {**MINIMAL, "automated_labeling": {"target_acuracy": 0.9}}
    message = config_error(tmp_path, fields)

    assert "automated_labeling.target_acuracy: unknown field" in message
    assert "target_accuracy" in message.split("allowed fields:")[1]
    assert_no_noise(message)


def test_unknown_task_type_lists_supported(tmp_path: Path) -> None:
    message = config_error(tmp_path, {**MINIMAL, "task_type": "audio-classification"})

    assert "task_type" in message
    assert "'audio-classification'" in message
    assert "image-classification, text-classification" in message
    assert "object-detection" not in message
    assert_no_noise(message)


@pytest.mark.parametrize("task_type", ["object-detection", "semantic-segmentation"])
def test_reserved_task_type_rejected(tmp_path: Path, task_type: str) -> None:
    message = config_error(tmp_path, {**MINIMAL, "task_type": task_type})

    assert f"task_type {task_type!r}" in message
    assert "reserved but not available yet" in message
    assert "image-classification, text-classification" in message
    assert_no_noise(message)


def test_metadata_suffix_attribute_rejected(tmp_path: Path) -> None:
    fields = {**MINIMAL, "label_attribute_name": "topic-metadata"}
    message = config_error(tmp_path, fields)

    assert "label_attribute_name" in message
    assert "'topic-metadata'" in message
    assert "ends with '-metadata'" in message
    assert "choose another name" in message
    assert_no_noise(message)


@pytest.mark.parametrize("labels", [[], ["only"]])
def test_fewer_than_two_labels_rejected(tmp_path: Path, labels: list[str]) -> None:
    message = config_error(tmp_path, {**MINIMAL, "label_categories": labels})

    assert "label_categories" in message
    assert "at least 2 labels" in message
    assert repr(labels) in message
    assert_no_noise(message)


def test_duplicate_labels_rejected(tmp_path: Path) -> None:
    fields = {**MINIMAL, "label_categories": ["cat", "dog", "cat"]}
    message = config_error(tmp_path, fields)

    assert "label_categories" in message
    assert "'cat' is listed twice" in message
    assert_no_noise(message)


def test_blank_label_rejected(tmp_path: Path) -> None:
    fields = {**MINIMAL, "label_categories": ["cat", "  "]}
    message = config_error(tmp_path, fields)

    assert "label_categories" in message
    assert "must not be empty" in message


def test_label_category_file_read(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "categories.json").write_text(json.dumps(GT_CATEGORIES))
    fields = {key: value for key, value in MINIMAL.items() if key != "label_categories"}
    fields["label_category_file"] = "meta/categories.json"
    config = load_job_config(write_job(tmp_path, fields))

    assert config.label_categories == ("cat", "dog", "bird")


def test_label_category_file_missing(tmp_path: Path) -> None:
    fields = {key: value for key, value in MINIMAL.items() if key != "label_categories"}
    fields["label_category_file"] = "nowhere.json"
    message = config_error(tmp_path, fields)

    assert "label category file" in message
    assert str(tmp_path / "nowhere.json") in message
    assert "not found" in message
    assert_no_noise(message)


def test_label_category_file_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "categories.json").write_text('{"labels": [', encoding="utf-8")
    fields = {key: value for key, value in MINIMAL.items() if key != "label_categories"}
    fields["label_category_file"] = "categories.json"
    message = config_error(tmp_path, fields)

    assert str(tmp_path / "categories.json") in message
    assert "not valid JSON" in message
    assert_no_noise(message)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"document-version": "2018-11-28"}, "no 'labels' list"),
        (["cat", "dog"], "no 'labels' list"),
        ({"labels": "cat,dog"}, "no 'labels' list"),
        ({"labels": ["cat", "dog"]}, "entry 0 is 'cat'"),
        ({"labels": [{"label": "cat"}, {"name": "dog"}]}, "entry 1 is {'name': 'dog'}"),
        ({"labels": [{"label": "cat"}, {"label": 7}]}, "entry 1 is {'label': 7}"),
    ],
)
def test_label_category_file_wrong_shape(
    tmp_path: Path, document: Any, expected: str
) -> None:
    (tmp_path / "categories.json").write_text(json.dumps(document), encoding="utf-8")
    fields = {key: value for key, value in MINIMAL.items() if key != "label_categories"}
    fields["label_category_file"] = "categories.json"
    message = config_error(tmp_path, fields)

    assert str(tmp_path / "categories.json") in message
    assert expected in message
    assert '"document-version": "2018-11-28"' in message or "expected" in message
    assert_no_noise(message)


def test_label_category_file_with_categories(tmp_path: Path) -> None:
    (tmp_path / "categories.json").write_text(json.dumps(GT_CATEGORIES))
    fields = {**MINIMAL, "label_category_file": "categories.json"}
    message = config_error(tmp_path, fields)

    assert "label_categories" in message
    assert "label_category_file" in message
    assert "not both" in message


def test_label_category_file_duplicates_rejected(tmp_path: Path) -> None:
    document = {"labels": [{"label": "cat"}, {"label": "cat"}]}
    (tmp_path / "categories.json").write_text(json.dumps(document))
    fields = {key: value for key, value in MINIMAL.items() if key != "label_categories"}
    fields["label_category_file"] = "categories.json"
    message = config_error(tmp_path, fields)

    assert "'cat' is listed twice" in message


@pytest.mark.parametrize("accuracy", [0.5, 1.0, 1.2, -0.3])
def test_target_accuracy_out_of_range(tmp_path: Path, accuracy: float) -> None:
    fields = {**MINIMAL, "automated_labeling": {"target_accuracy": accuracy}}
    message = config_error(tmp_path, fields)

    assert "automated_labeling.target_accuracy" in message
    assert f"(got {accuracy!r})" in message
    assert "greater than 0.5" in message or "less than 1" in message
    assert_no_noise(message)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"seed": True}, "seed"),
        ({"automated_labeling": {"confidence": True}}, "automated_labeling.confidence"),
        (
            {"model": "fine-tuned-minilm", "fine_tuning": {"trainable_layers": True}},
            "fine_tuning.trainable_layers",
        ),
        ({"workforce": {"seconds_per_task": False}}, "workforce.seconds_per_task"),
    ],
)
def test_boolean_for_number_rejected(
    tmp_path: Path, fields: dict[str, Any], path: str
) -> None:
    message = config_error(tmp_path, {**MINIMAL, **fields})

    assert f"{path}: expects a number, got " in message
    assert_no_noise(message)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_error_rate_out_of_range(tmp_path: Path, rate: float) -> None:
    fields = {**MINIMAL, "workforce": {"type": "simulated", "error_rates": [0.1, rate]}}
    message = config_error(tmp_path, fields)

    assert "workforce.error_rates" in message
    assert "workforce.simulated" not in message
    assert f"error rate {rate} is outside [0, 1]" in message
    assert_no_noise(message)


def test_empty_error_rates_rejected(tmp_path: Path) -> None:
    fields = {**MINIMAL, "workforce": {"error_rates": []}}
    message = config_error(tmp_path, fields)

    assert "workforce.error_rates" in message
    assert "at least one worker" in message


def test_unknown_workforce_type_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, {**MINIMAL, "workforce": {"type": "mturk"}})

    assert "workforce" in message
    assert "'mturk'" in message
    assert "'simulated', 'web'" in message


def test_invalid_job_name_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, {**MINIMAL, "job_name": "my job!"})

    assert "job_name" in message
    assert "'my job!'" in message
    assert_no_noise(message)


def test_several_problems_listed_together(tmp_path: Path) -> None:
    fields = {**MINIMAL, "workers_per_item": 0, "seed": "abc"}
    message = config_error(tmp_path, fields)

    assert "workers_per_item" in message
    assert "seed" in message
    assert len(message.splitlines()) == 3


def test_invalid_yaml_rejected(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("job_name: [unclosed\ntask_type: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_job_config(path)
    message = str(caught.value)

    assert str(path) in message
    assert "not valid YAML" in message
    assert "line" in message
    assert_no_noise(message)


@pytest.mark.parametrize(
    ("text", "type_name"),
    [("- a\n- b\n", "list"), ("just text\n", "str"), ("", "NoneType")],
)
def test_non_mapping_yaml_rejected(tmp_path: Path, text: str, type_name: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_job_config(path)
    message = str(caught.value)

    assert "expected a mapping of fields" in message
    assert f"got {type_name}" in message
    assert_no_noise(message)


def test_missing_job_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="not found") as caught:
        load_job_config(path)

    assert str(path) in str(caught.value)


def test_config_error_is_labelloop_error() -> None:
    with pytest.raises(LabelloopError):
        parse_job_config([], base_dir=Path("."), source="inline")


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_outside_generator_range(tmp_path: Path, seed: int) -> None:
    message = config_error(tmp_path, {**MINIMAL, "seed": seed})

    assert "seed" in message
    assert f"(got {seed})" in message
    assert_no_noise(message)


def test_label_spreading_defaults_to_auto(tmp_path: Path) -> None:
    config = load_job_config(write_job(tmp_path, MINIMAL))

    assert config.label_spreading == "auto"


def test_unknown_label_spreading_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, {**MINIMAL, "label_spreading": "on"})

    assert "label_spreading" in message
    assert "'auto' or 'off'" in message
    assert_no_noise(message)


def test_label_spreading_reads_yaml_off(tmp_path: Path) -> None:
    path = write_job(tmp_path, MINIMAL)
    path.write_text(path.read_text() + "label_spreading: off\n")

    assert load_job_config(path).label_spreading == "off"
