"""Write a finished job's outputs in Ground Truth's layout.

``<output_path>/manifests/output/output.manifest``
    Every input line, with the label and ``<attribute>-metadata`` added.
``<output_path>/annotations/worker-response/worker-responses.jsonl``
    Every worker's answer.
``<output_path>/models/final/``
    The final model (joblib) and its model card.
``<output_path>/report/``
    ``report.json`` and the self-contained ``report.html``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from labelloop.config import JobConfig
from labelloop.manifest import write_manifest
from labelloop.store import JobStore
from labelloop.store.store import isoformat

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputPaths:
    """Paths of a job's written outputs."""

    manifest: Path
    worker_responses: Path
    model: Path
    model_card: Path
    report_json: Path
    report_html: Path


def output_paths(config: JobConfig) -> OutputPaths:
    root = config.output_path
    return OutputPaths(
        manifest=root / "manifests" / "output" / "output.manifest",
        worker_responses=root
        / "annotations"
        / "worker-response"
        / "worker-responses.jsonl",
        model=root / "models" / "final" / "model.joblib",
        model_card=root / "models" / "final" / "model-card.md",
        report_json=root / "report" / "report.json",
        report_html=root / "report" / "report.html",
    )


def label_type(config: JobConfig) -> str:
    """Return the metadata ``type`` of the job's labels."""
    return f"groundtruth/{config.task_type.value}"


def output_records(config: JobConfig, store: JobStore) -> list[dict[str, Any]]:
    """Return the output manifest lines: each input record plus its label.

    Unlabeled items keep only their record; items that failed carry
    ``failure-reason`` in their metadata. Lines that were not valid JSON have no
    record and are left out.
    """
    attribute = config.label_attribute_name
    class_names = list(config.label_categories)
    class_map = {str(index): name for index, name in enumerate(class_names)}
    labels = store.labels()
    records = []
    for status in ("ok", "failed"):
        for item in store.items(status=status):
            if item.record is None:
                continue
            record = dict(item.record)
            label = labels.get(item.id)
            if label is not None:
                class_index = int(label.value["class"])
                record[attribute] = class_index
                record[f"{attribute}-metadata"] = {
                    "class-name": class_names[class_index],
                    "class-map": class_map,
                    "confidence": round(float(label.confidence), 4),
                    "type": label_type(config),
                    "job-name": f"labeling-job/{config.job_name}",
                    "human-annotated": "yes" if label.origin == "human" else "no",
                    "creation-date": isoformat(label.created_at),
                }
            elif item.status == "failed":
                record[f"{attribute}-metadata"] = {
                    "failure-reason": item.error,
                    "type": label_type(config),
                    "job-name": f"labeling-job/{config.job_name}",
                }
            records.append((item.line, record))
    records.sort(key=lambda pair: pair[0])
    return [record for _, record in records]


def write_worker_responses(config: JobConfig, store: JobStore, path: Path) -> None:
    """Write every answer as one JSON line: item line, worker, class, round."""
    lines = {item.id: item.line for item in store.items()}
    rounds = {task.item_id: task.round for task in store.tasks()}
    class_names = list(config.label_categories)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for answer in store.answers():
            class_index = int(answer.value["class"])
            row = {
                "line": lines.get(answer.item_id),
                "worker-id": answer.worker_id,
                "class": class_index,
                "class-name": class_names[class_index]
                if 0 <= class_index < len(class_names)
                else None,
                "round": rounds.get(answer.item_id),
                "seconds": answer.seconds,
                "submission-time": isoformat(answer.created_at),
            }
            handle.write(json.dumps(row) + "\n")


def _spreading_lines(alpha: float | None) -> list[str]:
    """Return the model card's note on label spreading, empty without it."""
    if not alpha:
        return []
    return [
        f"- The job's scores spread this model's probabilities over a graph of "
        f"the job's items (label spreading at strength {alpha:g}). The "
        "validation accuracy above includes spreading. The saved model does not "
        "spread, so on new items it may score lower."
    ]


def write_model(
    config: JobConfig,
    model: Any,
    info: dict[str, Any],
    *,
    paths: OutputPaths,
    validation_accuracy: float | None,
) -> None:
    """Save the final model with a short model card (data, classes, accuracy)."""
    paths.model.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(
        {
            "model": model,
            "class_names": list(config.label_categories),
            "features": info["features"],
            "corpus_features": info.get("corpus_features"),
        },
        paths.model,
    )
    accuracy = (
        "not measured" if validation_accuracy is None else f"{validation_accuracy:.4f}"
    )
    card = [
        f"# Model card: {config.job_name}",
        "",
        f"- Task: {config.task_type.value}",
        f"- Model: {info['model']} on features `{info['features']}`",
        f"- Training data: {info['training_items']} human-labeled items of "
        f"`{config.input_manifest.name}`",
        f"- Classes ({len(config.label_categories)}): "
        + ", ".join(config.label_categories),
        f"- Validation accuracy (cross-fitted, last round): {accuracy}",
        *_spreading_lines(info.get("spreading_alpha")),
        "",
        (
            "Load it with `joblib.load(path)`: a dict with `model` (its "
            "`predict_proba` takes a list of texts) and `class_names`."
            if info.get("input") == "texts"
            else "Load it with `joblib.load(path)`: a dict with `model` (its "
            "`predict_proba` takes feature vectors), `class_names` and `features`, "
            "the extractor that the vectors must come from. Where `corpus_features` "
            "is not None, its `transform(texts)` gives columns to append to the "
            "extractor's vectors."
        ),
        "",
    ]
    paths.model_card.write_text("\n".join(card), encoding="utf-8")


def write_outputs(
    config: JobConfig,
    store: JobStore,
    report: dict[str, Any],
    model: Any,
    model_info: dict[str, Any],
) -> OutputPaths:
    """Write the output manifest, worker responses, model and report."""
    from labelloop.report import write_html_report

    paths = output_paths(config)
    count = write_manifest(paths.manifest, output_records(config, store))
    logger.info("wrote %s lines to %s", count, paths.manifest)
    write_worker_responses(config, store, paths.worker_responses)
    write_model(
        config,
        model,
        model_info,
        paths=paths,
        validation_accuracy=report.get("validation_accuracy"),
    )
    paths.report_json.parent.mkdir(parents=True, exist_ok=True)
    paths.report_json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    write_html_report(report, paths.report_html)
    return paths
