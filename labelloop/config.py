"""Job configuration: the YAML job file, validated into frozen pydantic models.

Field names follow Ground Truth's ``CreateLabelingJob`` request where it has one,
in snake case (``LabelAttributeName`` becomes ``label_attribute_name``).
"""

from __future__ import annotations

import json
import reprlib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from labelloop.errors import ConfigError

#: Ground Truth's label category file version.
LABEL_CATEGORY_DOCUMENT_VERSION = "2018-11-28"

#: Ground Truth runs automated labeling only on datasets of at least this size.
MIN_ITEMS_FOR_AUTOMATED_LABELING = 1250


class TaskType(StrEnum):
    """Kinds of labeling task; detection and segmentation are reserved names."""

    IMAGE_CLASSIFICATION = "image-classification"
    TEXT_CLASSIFICATION = "text-classification"
    OBJECT_DETECTION = "object-detection"
    SEMANTIC_SEGMENTATION = "semantic-segmentation"

    @property
    def media(self) -> Literal["image", "text"]:
        return "text" if self is TaskType.TEXT_CLASSIFICATION else "image"


SUPPORTED_TASK_TYPES = (TaskType.IMAGE_CLASSIFICATION, TaskType.TEXT_CLASSIFICATION)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_booleans_for_numbers(cls, data: Any) -> Any:
        # YAML reads true, yes and on as booleans, which pydantic converts to 1.
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(name)
                kinds = get_args(field.annotation) or (field.annotation,)
                if isinstance(value, bool) and any(k in (int, float) for k in kinds):
                    raise PydanticCustomError(
                        "boolean_for_number",
                        "expects a number",
                        {"field": name, "value": value},
                    )
        return data


class StoppingConditions(_Frozen):
    """When the job stops sending items to humans.

    ``max_human_labeled_object_count`` caps human-labeled items;
    ``max_percentage_of_input_dataset_labeled`` stops the job once that share of
    the dataset carries a label, human or machine.
    """

    max_human_labeled_object_count: int | None = Field(default=None, ge=1)
    max_percentage_of_input_dataset_labeled: float = Field(default=100.0, gt=0, le=100)


class AutomatedLabeling(_Frozen):
    """Machine labeling settings.

    ``target_accuracy`` is the accuracy the machine labels must reach and
    ``confidence`` the probability with which the bound on their error holds.
    """

    enabled: bool = True
    target_accuracy: float = Field(default=0.95, gt=0.5, lt=1.0)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    threshold_mode: Literal["global", "class-wise", "auto"] = "auto"
    threshold_method: Literal["certified", "empirical", "tbal"] = "certified"
    validation_size: int | None = Field(default=None, ge=20)
    cross_fit_folds: int = Field(default=5, ge=2, le=20)
    min_items: int = Field(default=MIN_ITEMS_FOR_AUTOMATED_LABELING, ge=1)


class FineTuning(_Frozen):
    """Training settings of the ``fine-tuned-minilm`` model.

    ``epochs`` passes over the human labels, raised for small label sets until
    training takes ``min_steps`` optimization steps of ``batch_size`` texts.
    Texts are cut to ``max_length`` tokens. ``trainable_layers`` trains only
    that many top layers of the encoder's six and keeps the rest frozen, and
    ``null`` trains the whole encoder.
    """

    epochs: int = Field(default=3, ge=1, le=100)
    min_steps: int = Field(default=120, ge=1)
    batch_size: int = Field(default=32, ge=1, le=1024)
    max_length: int = Field(default=128, ge=8, le=512)
    # The classifier's own default, ``text_tuning.TRAINABLE_LAYERS``, which
    # this module does not import because it pulls in the model libraries.
    trainable_layers: int | None = Field(default=3, ge=1, le=6)


class SimulatedWorkforce(_Frozen):
    """Workers that answer from the true label stored in each manifest line.

    ``error_rates`` gives one worker per entry: the probability that the worker
    answers a wrong class, chosen uniformly among the others.
    """

    type: Literal["simulated"] = "simulated"
    true_label_key: str = "true-label"
    error_rates: tuple[float, ...] = (0.0,)
    seconds_per_task: float = Field(default=10.0, ge=0)

    @field_validator("error_rates")
    @classmethod
    def _check_rates(cls, rates: tuple[float, ...]) -> tuple[float, ...]:
        if not rates:
            raise ValueError("needs at least one worker")
        for rate in rates:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"error rate {rate} is outside [0, 1]")
        return rates


class WebWorkforce(_Frozen):
    """People labeling in the browser UI that ``labelloop serve`` serves."""

    type: Literal["web"] = "web"
    poll_seconds: float = Field(default=2.0, gt=0)


class WorkerQualitySettings(_Frozen):
    """Gold items, worker exclusion and adaptive redundancy.

    Items whose manifest line has ``gold_label_key`` are gold: their value is
    the known class name (or index). Each worker answers up to
    ``gold_per_worker`` of them, a third of that number in each of the first
    three rounds. A worker whose estimated accuracy falls below
    ``min_worker_accuracy`` after ``min_answers_before_exclusion`` answers is
    excluded. With ``adaptive_redundancy``, each item first gets ``min_answers``
    answers and goes to one more worker at a time, up to ``max_answers``
    (default ``workers_per_item``), while its answers disagree or its top
    posterior probability is below ``confidence``.
    """

    gold_label_key: str | None = Field(default=None, min_length=1)
    gold_per_worker: int = Field(default=10, ge=0)
    min_worker_accuracy: float | None = Field(default=None, gt=0, lt=1)
    min_answers_before_exclusion: int = Field(default=20, ge=1)
    adaptive_redundancy: bool = False
    min_answers: int = Field(default=2, ge=1, le=9)
    max_answers: int | None = Field(default=None, ge=1, le=9)
    confidence: float = Field(default=0.9, gt=0, le=1)

    @model_validator(mode="after")
    def _check_answer_range(self) -> WorkerQualitySettings:
        if self.max_answers is not None and self.max_answers < self.min_answers:
            raise ValueError(
                f"max_answers is {self.max_answers} but min_answers is "
                f"{self.min_answers}; set max_answers >= min_answers"
            )
        return self


class JobConfig(_Frozen):
    """A labeling job, as read from its YAML file.

    Paths are resolved against the folder of the job file.
    """

    job_name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", max_length=63)
    task_type: TaskType
    label_attribute_name: str = Field(min_length=1, max_length=127)
    label_categories: tuple[str, ...]
    input_manifest: Path
    output_path: Path
    database_url: str | None = None
    workforce: SimulatedWorkforce | WebWorkforce = Field(
        default_factory=SimulatedWorkforce, discriminator="type"
    )
    workers_per_item: int = Field(default=1, ge=1, le=9)
    consolidation: str = "majority-vote"
    worker_quality: WorkerQualitySettings = Field(default_factory=WorkerQualitySettings)
    task_time_limit_seconds: int = Field(default=300, ge=30, le=28800)
    task_availability_lifetime_seconds: int = Field(default=864000, ge=60)
    stopping_conditions: StoppingConditions = Field(default_factory=StoppingConditions)
    human_batch_size: int | None = Field(default=None, ge=1)
    automated_labeling: AutomatedLabeling = Field(default_factory=AutomatedLabeling)
    query_strategy: str = "margin"
    features: str = "auto"
    model: str = "logistic-regression"
    label_spreading: Literal["auto", "off"] = "auto"
    fine_tuning: FineTuning = Field(default_factory=FineTuning)
    human_cost_per_item: float = Field(default=0.08, ge=0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @field_validator("label_attribute_name")
    @classmethod
    def _check_attribute(cls, name: str) -> str:
        if name.endswith("-metadata"):
            raise ValueError(
                f"{name!r} ends with '-metadata', which names the metadata key; "
                "choose another name"
            )
        return name

    @field_validator("label_spreading", mode="before")
    @classmethod
    def _read_yaml_switch(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` (and `no`, `false`) as False.
        if value is False:
            return "off"
        if value is True:
            return "auto"
        return value

    @field_validator("features", "query_strategy", "model", "consolidation")
    @classmethod
    def _check_registered(cls, name: str, info: Any) -> str:
        # Imported here: those modules import this one.
        from labelloop.consolidation import CONSOLIDATORS
        from labelloop.features.cache import PRESETS
        from labelloop.models import MODELS
        from labelloop.models.text_tuning import FINE_TUNED_MODEL
        from labelloop.strategies import STRATEGIES

        known = {
            "features": ["auto", *PRESETS],
            "query_strategy": STRATEGIES.names(),
            "model": [*MODELS.names(), FINE_TUNED_MODEL],
            "consolidation": CONSOLIDATORS.names(),
        }[info.field_name]
        if name not in known:
            raise ValueError(
                f"unknown {info.field_name}; choose one of: {', '.join(known)}"
            )
        return name

    @field_validator("label_categories")
    @classmethod
    def _check_categories(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(labels) < 2:
            raise ValueError("needs at least 2 labels")
        seen: set[str] = set()
        for label in labels:
            if not label.strip():
                raise ValueError("labels must not be empty")
            if label in seen:
                raise ValueError(f"label {label!r} is listed twice")
            seen.add(label)
        return labels

    @field_validator("worker_quality")
    @classmethod
    def _check_redundancy(
        cls, settings: WorkerQualitySettings, info: ValidationInfo
    ) -> WorkerQualitySettings:
        workers_per_item = info.data.get("workers_per_item")
        if (
            settings.adaptive_redundancy
            and settings.max_answers is None
            and workers_per_item is not None
            and settings.min_answers > workers_per_item
        ):
            raise ValueError(
                f"min_answers is {settings.min_answers} but max_answers defaults "
                f"to workers_per_item={workers_per_item}; set max_answers >= "
                "min_answers or raise workers_per_item"
            )
        return settings

    @property
    def max_answers_per_item(self) -> int:
        """Most answers an item may get: ``max_answers`` under adaptive redundancy."""
        settings = self.worker_quality
        if settings.adaptive_redundancy and settings.max_answers is not None:
            return settings.max_answers
        return self.workers_per_item

    @property
    def initial_answers_per_item(self) -> int:
        """Answers every new task asks for before the loop asks for more."""
        settings = self.worker_quality
        if settings.adaptive_redundancy:
            return settings.min_answers
        return self.workers_per_item

    @property
    def database(self) -> str:
        """SQLAlchemy URL of the job's database (SQLite in the output folder)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.output_path / 'job.db').as_posix()}"


def read_label_category_file(path: Path) -> list[str]:
    """Read a Ground Truth label category file and return its labels in order."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"label category file {path} not found") from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"label category file {path} is not valid JSON: {error}"
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"label category file {path} is not UTF-8 text ({error.reason} at byte "
            f"{error.start}); save it as UTF-8 JSON"
        ) from None
    except (OSError, ValueError, RecursionError) as error:
        raise ConfigError(
            f"cannot read label category file {path}: "
            f"{getattr(error, 'strerror', None) or error}; give the path of a JSON "
            "file"
        ) from None
    labels = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(labels, list):
        raise ConfigError(
            f"label category file {path} has no 'labels' list; expected "
            '{"document-version": "2018-11-28", "labels": [{"label": "..."}]}'
        )
    names = []
    for position, entry in enumerate(labels):
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise ConfigError(
                f"label category file {path}: entry {position} is {entry!r}; "
                'expected {"label": "<name>"}'
            )
        names.append(entry["label"])
    return names


#: Models whose fields a validation error location can point into. Pydantic puts
#: the tag of a discriminated union (``simulated``, ``web``) into the location.
_MODELS_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): JobConfig,
    ("stopping_conditions",): StoppingConditions,
    ("automated_labeling",): AutomatedLabeling,
    ("worker_quality",): WorkerQualitySettings,
    ("fine_tuning",): FineTuning,
    ("workforce", "simulated"): SimulatedWorkforce,
    ("workforce", "web"): WebWorkforce,
}

#: Fields of the job file that are read before validation, not by ``JobConfig``.
_EXTRA_JOB_FIELDS = ("label_category_file",)


def _allowed_fields(loc: tuple[str, ...]) -> str:
    model = _MODELS_AT.get(loc)
    if model is None:
        return ""
    names = list(model.model_fields)
    if model is JobConfig:
        names += _EXTRA_JOB_FIELDS
    return "; allowed fields: " + ", ".join(sorted(names))


def _short_repr(value: Any) -> str:
    """Repr of a value from the job file, cut short (YAML aliases can nest deeply)."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4
_REPR.maxstring = 80
_REPR.maxother = 80


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid job file {source}:"]
    for problem in error.errors():
        loc = tuple(str(part) for part in problem["loc"])
        # Drop the union tag so that the path is the one written in the file.
        path_parts = [
            part
            for position, part in enumerate(loc)
            if not (position == 1 and loc[0] == "workforce")
        ]
        field = ".".join(path_parts) or "(top level)"
        value = problem.get("input")
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            lines.append(f"  {field}: missing (required field)")
        elif problem["type"] == "extra_forbidden":
            allowed = _allowed_fields(loc[:-1])
            lines.append(f"  {field}: unknown field; check its spelling{allowed}")
        elif problem["type"] == "boolean_for_number":
            context = problem.get("ctx", {})
            field = ".".join([*path_parts, str(context.get("field"))])
            lines.append(
                f"  {field}: expects a number, got {str(context.get('value')).lower()}"
                " (YAML reads true, yes and on as booleans)"
            )
        elif loc == ("task_type",) and problem["type"] == "enum":
            supported = ", ".join(t.value for t in SUPPORTED_TASK_TYPES)
            lines.append(
                f"  {field}: {_short_repr(value)} is not a task type; use one of: "
                f"{supported}"
            )
        else:
            lines.append(f"  {field}: {message} (got {_short_repr(value)})")
    return "\n".join(lines)


def parse_job_config(raw: dict[str, Any], *, base_dir: Path, source: str) -> JobConfig:
    """Validate a job mapping; relative paths resolve against ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"invalid job file {source}: expected a mapping of fields, "
            f"got {type(raw).__name__} {reprlib.repr(raw)}"
        )
    data = dict(raw)

    # The workforce type may be left out: simulated is the default.
    workforce = data.get("workforce")
    if isinstance(workforce, dict) and "type" not in workforce:
        data["workforce"] = {"type": "simulated", **workforce}

    category_file = data.pop("label_category_file", None)
    if category_file is not None:
        if "label_categories" in data:
            raise ConfigError(
                f"invalid job file {source}: give label_categories or "
                "label_category_file, not both"
            )
        data["label_categories"] = read_label_category_file(
            (base_dir / str(category_file)).resolve()
        )

    for key in ("input_manifest", "output_path"):
        if isinstance(data.get(key), str):
            data[key] = (base_dir / data[key]).resolve()

    try:
        config = JobConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None

    if config.task_type not in SUPPORTED_TASK_TYPES:
        supported = ", ".join(t.value for t in SUPPORTED_TASK_TYPES)
        raise ConfigError(
            f"invalid job file {source}: task_type {config.task_type.value!r} is "
            f"reserved but not available yet; use one of: {supported}"
        )
    from labelloop.models.text_tuning import FINE_TUNED_MODEL

    # Defaults pass, so a dumped and reloaded logistic job stays valid.
    if config.fine_tuning != FineTuning() and config.model != FINE_TUNED_MODEL:
        raise ConfigError(
            f"invalid job file {source}: fine_tuning applies only to model "
            f"{FINE_TUNED_MODEL!r}, and this job's model is {config.model!r}; "
            f"remove fine_tuning or set model: {FINE_TUNED_MODEL}"
        )
    if (
        config.model == FINE_TUNED_MODEL
        and config.task_type is not TaskType.TEXT_CLASSIFICATION
    ):
        raise ConfigError(
            f"invalid job file {source}: model {FINE_TUNED_MODEL!r} fine-tunes a "
            f"text encoder, so it needs task_type "
            f"{TaskType.TEXT_CLASSIFICATION.value!r}; use logistic-regression "
            f"for {config.task_type.value}"
        )
    return config


def load_job_config(path: Path) -> JobConfig:
    """Read and validate a YAML job file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"job file {path} not found") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"job file {path} is not UTF-8 text ({error.reason} at byte "
            f"{error.start}); save it as UTF-8"
        ) from None
    except OSError as error:
        raise ConfigError(
            f"cannot read job file {path}: {error.strerror or error}; give the path "
            "of a YAML file"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"job file {path} is not valid YAML: {error}") from None
    return parse_job_config(raw, base_dir=path.resolve().parent, source=str(path))
