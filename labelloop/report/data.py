"""The job report as data: counters, rounds, the guarantee, cost and timing."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from scipy.stats import beta

from labelloop.certify import SPENDING_SHARE
from labelloop.config import JobConfig, SimulatedWorkforce
from labelloop.quality import answer_class
from labelloop.store import JobStore
from labelloop.store.store import isoformat, machine_labels_in_force

GUARANTEE = (
    "With probability at least {confidence:.0%}, the error rate of the machine "
    "labels is at most {max_error:.1%}. Each round's test covers every item "
    "without a human label, earlier machine labels included, with an exact "
    "Clopper-Pearson bound on validation items that uniform random samples drew, "
    "scored by models that did not train on them. A validation item whose task "
    "expired unanswered counts as an error. The machine labels in force are "
    "the set of one passing test. The rounds' scans split the {delta:.0%} failure "
    "budget. A first-round scan started from the model's confidences gets 6/pi^2 "
    "of it. Until a scan passes, each may bring the total spent up to that share, "
    "if any, plus t^2/(1+t^2) of the rest, where t is the validation items over "
    "{spending:.0%} of the items; after the first pass, the k-th scan gets "
    "6/(pi^2 k^2) of what was left. Rounds that run no scan spend nothing, so the "
    "total stays within the budget and every passing test is valid at once, "
    "whichever one certified the final set. It assumes that the validation sample "
    "is exchangeable with the machine-labeled items and "
    "that human labels are correct: label noise in the validation set counts "
    "human mistakes as machine errors or hides machine errors, so the bound holds "
    "against the human labels, and holds against the truth only as far as they do."
)


NO_GUARANTEE = (
    "No guarantee: this job chose its thresholds by the {method!r} reference "
    "rule, which estimates the error of the machine labels but does not bound it."
)


def _interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of an error rate."""
    alpha = 1.0 - confidence
    low = 0.0 if errors == 0 else float(beta.ppf(alpha / 2, errors, n - errors + 1))
    high = (
        1.0 if errors == n else float(beta.ppf(1 - alpha / 2, errors + 1, n - errors))
    )
    return low, high


def _human_label_sources(
    store: JobStore, labels: dict[int, Any], round_rows: list[Any]
) -> dict[str, int]:
    """Count human labels by how their items were sent to humans.

    The keys: ``validation`` for uniform random draws, which certify and
    train, ``query`` for items the query strategy chose, ``remaining`` for
    the last batch of items no test certified, and ``gold`` for items of
    known class that check the workers. Items labeled without a task count
    as ``other``.
    """
    remaining_rounds = {
        row.number
        for row in round_rows
        if (row.stats.get("plan") or {}).get("remaining")
    }
    tasks = {task.item_id: task for task in store.tasks()}
    sources = Counter({"validation": 0, "query": 0, "remaining": 0, "gold": 0})
    for item_id, label in labels.items():
        if label.origin != "human":
            continue
        task = tasks.get(item_id)
        if task is None:
            sources["other"] += 1
        elif task.purpose == "query" and task.round in remaining_rounds:
            sources["remaining"] += 1
        else:
            sources[task.purpose] += 1
    return dict(sources)


def build_report(
    config: JobConfig, store: JobStore, *, timing: dict[str, float]
) -> dict[str, Any]:
    """Collect everything the JSON and HTML reports show."""
    job = store.job()
    expired_per_round = Counter(task.round for task in store.tasks(status="expired"))
    # Ground Truth's label counters, and the items whose task expired before it
    # had all its answers (labeled from the answers it had, if any).
    counters = {**store.counters(), "Expired": sum(expired_per_round.values())}
    labels = store.labels()
    items = store.items()
    failed = store.items(status="failed")
    class_names = list(config.label_categories)
    settings = config.automated_labeling

    rounds = []
    by_round_origin: dict[int, Counter[str]] = defaultdict(Counter)
    for label in labels.values():
        by_round_origin[label.round][label.origin] += 1
    round_rows = store.rounds()
    for round_row, in_force in zip(
        round_rows, machine_labels_in_force(round_rows), strict=True
    ):
        stats = {
            k: v for k, v in round_row.stats.items() if k != "covered_validation_ids"
        }
        stats["round"] = round_row.number
        stats["status"] = round_row.status
        stats["human_labeled"] = by_round_origin[round_row.number]["human"]
        stats["machine_labeled"] = in_force
        stats["machine_labels_written"] = by_round_origin[round_row.number]["machine"]
        stats["expired_tasks"] = expired_per_round[round_row.number]
        rounds.append(stats)

    certified = settings.threshold_method == "certified"

    # Machine labels as a whole: weight each round's validation estimate and
    # certified bound by the machine labels of that round still in force.
    machine_total = counters["MachineLabeled"]
    weighted_bound = 0.0
    weighted_error = 0.0
    weighted_low = 0.0
    weighted_high = 0.0
    for stats in rounds:
        count = stats["machine_labels_written"]
        if not count or not machine_total:
            continue
        weight = count / machine_total
        n_above = stats.get("validation_above_threshold", 0)
        errors = stats.get("validation_errors_above_threshold", 0)
        weighted_bound += weight * (stats.get("certified_error_bound") or 1.0)
        if n_above:
            weighted_error += weight * errors / n_above
            low, high = _interval(errors, n_above)
            weighted_low += weight * low
            weighted_high += weight * high
    machine = {
        "count": machine_total,
        "certified_error_bound": (
            weighted_bound if machine_total and certified else None
        ),
        "estimated_accuracy": 1.0 - weighted_error if machine_total else None,
        "estimated_accuracy_interval": [1.0 - weighted_high, 1.0 - weighted_low]
        if machine_total
        else None,
    }

    measured = None
    truth: dict[int, int] = {}
    workforce = config.workforce
    if isinstance(workforce, SimulatedWorkforce):
        index = {name: i for i, name in enumerate(class_names)}
        for item in items:
            value = (item.record or {}).get(workforce.true_label_key)
            if isinstance(value, str) and value in index:
                truth[item.id] = index[value]
        if truth:
            outcome: dict[str, list[bool]] = {"human": [], "machine": []}
            for item_id, label in labels.items():
                if item_id in truth:
                    outcome[label.origin].append(
                        int(label.value["class"]) == truth[item_id]
                    )
            all_outcomes = outcome["human"] + outcome["machine"]
            measured = {
                "machine_accuracy": _mean(outcome["machine"]),
                "human_accuracy": _mean(outcome["human"]),
                "labeled_accuracy": _mean(all_outcomes),
                "items_with_true_label": len(truth),
            }

    workers = _worker_activity(store, labels)
    sources = _human_label_sources(store, labels, round_rows)
    human_labels = _human_label_noise(
        store, labels, truth=truth, n_classes=len(class_names)
    )
    n_items = len(items)
    # Every answer is paid, so adaptive redundancy and gold answers count.
    n_answers = len(store.answers())
    human_cost = n_answers * config.human_cost_per_item
    all_human_cost = n_items * config.workers_per_item * config.human_cost_per_item
    last_accuracy = next(
        (
            s["validation_accuracy"]
            for s in reversed(rounds)
            if s.get("validation_accuracy") is not None
        ),
        None,
    )
    delta = 1.0 - settings.confidence
    return {
        "job_name": config.job_name,
        "task_type": config.task_type.value,
        "status": job.status if job else "unknown",
        "created": isoformat(job.created_at) if job else None,
        "finished": isoformat(job.finished_at) if job and job.finished_at else None,
        "class_names": class_names,
        "dataset": {
            "input_manifest": str(config.input_manifest),
            "items": n_items + len(failed),
            "valid_items": n_items,
            "failed_items": len(failed),
        },
        "counters": counters,
        "target_accuracy": settings.target_accuracy,
        "confidence": settings.confidence,
        "automated_labeling": settings.enabled and n_items >= settings.min_items,
        "automated_labeling_note": _automated_note(config, n_items),
        "guarantee": (
            GUARANTEE.format(
                confidence=settings.confidence,
                max_error=1 - settings.target_accuracy,
                delta=delta,
                spending=SPENDING_SHARE,
            )
            if certified
            else NO_GUARANTEE.format(method=settings.threshold_method)
        ),
        "machine_labels": machine,
        "measured": measured,
        "human_labels": human_labels,
        "human_label_sources": sources,
        "validation_accuracy": last_accuracy,
        "rounds": rounds,
        "workers": workers,
        "cost": {
            "human_cost_per_item": config.human_cost_per_item,
            "answers": n_answers,
            "workers_per_item": config.workers_per_item,
            "human_cost": human_cost,
            "all_human_cost": all_human_cost,
            "saved_share": 1.0 - human_cost / all_human_cost
            if all_human_cost
            else None,
        },
        "timing": timing,
        "failures": [{"line": item.line, "reason": item.error} for item in failed],
    }


def _mean(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _automated_note(config: JobConfig, n_items: int) -> str | None:
    settings = config.automated_labeling
    if not settings.enabled:
        return "automated labeling is off in the job file; humans labeled every item"
    if n_items < settings.min_items:
        return (
            f"automated labeling needs at least {settings.min_items} valid items and "
            f"the dataset has {n_items}; the job ran with humans only"
        )
    return None


def _human_label_noise(
    store: JobStore,
    labels: dict[int, Any],
    *,
    truth: dict[int, int],
    n_classes: int,
) -> dict[str, Any]:
    """Estimate the accuracy of the consolidated human labels.

    ``estimated_accuracy`` is the mean posterior confidence of the human labels
    that came from consolidated answers; gold items, whose labels are known,
    are left out. ``measured_accuracy`` scores the same labels against the true
    labels where those are known.
    """
    gold = store.gold_classes()
    consolidated = {
        item_id: label
        for item_id, label in labels.items()
        if label.origin == "human" and item_id not in gold
    }
    confidences = [float(label.confidence) for label in consolidated.values()]
    scored = [
        int(label.value["class"]) == truth[item_id]
        for item_id, label in consolidated.items()
        if item_id in truth
    ]
    answers = store.answers()
    skipped = sum(
        1 for answer in answers if not 0 <= answer_class(answer.value) < n_classes
    )
    on_consolidated = sum(1 for answer in answers if answer.item_id in consolidated)
    # With one answer per item and no gold items nothing measures a worker, so
    # the confidences are the consolidator's prior, not an estimate.
    estimable = bool(gold) or on_consolidated > len(consolidated)
    estimated = None
    if confidences and estimable:
        estimated = sum(confidences) / len(confidences)
    return {
        "count": len(consolidated),
        "estimated_accuracy": estimated,
        "estimable": estimable,
        "measured_accuracy": _mean(scored),
        "items_with_true_label": len(scored),
        "answers_per_item": on_consolidated / len(consolidated)
        if consolidated
        else None,
        "gold_items": len(gold),
        "skipped_answers": skipped,
    }


def _worker_activity(store: JobStore, labels: dict[int, Any]) -> list[dict[str, Any]]:
    per_worker: dict[str, dict[str, Any]] = {}
    for worker in store.workers():
        per_worker[worker.id] = {
            "worker_id": worker.id,
            "answers": 0,
            "agree": 0,
            "seconds": [],
        }
    for answer in store.answers():
        entry = per_worker.setdefault(
            answer.worker_id,
            {"worker_id": answer.worker_id, "answers": 0, "agree": 0, "seconds": []},
        )
        entry["answers"] += 1
        label = labels.get(answer.item_id)
        if (
            label is not None
            and label.origin == "human"
            and label.value == answer.value
        ):
            entry["agree"] += 1
        if answer.seconds is not None:
            entry["seconds"].append(answer.seconds)
    rows = []
    for entry in per_worker.values():
        seconds = sorted(entry.pop("seconds"))
        entry["agreement"] = (
            entry.pop("agree") / entry["answers"] if entry["answers"] else None
        )
        entry["median_seconds"] = seconds[len(seconds) // 2] if seconds else None
        rows.append(entry)
    _add_quality(rows, store)
    return sorted(rows, key=lambda row: row["worker_id"])


def _add_quality(rows: list[dict[str, Any]], store: JobStore) -> None:
    """Add each worker's latest quality estimate to its row, in place.

    Every row gets ``n_answers`` (answers the consolidation used) and
    ``excluded``; rows of workers with an estimate also get
    ``estimated_accuracy``, ``confusion``, ``gold_answers`` and
    ``gold_accuracy`` (None without gold answers).
    """
    estimates = store.worker_estimates()
    for row in rows:
        estimate = estimates.get(row["worker_id"])
        if estimate is None:
            row["n_answers"] = 0
            row["excluded"] = False
            continue
        row["n_answers"] = estimate.n_answers
        row["estimated_accuracy"] = estimate.accuracy
        row["confusion"] = estimate.confusion
        row["gold_answers"] = estimate.gold_answers
        row["gold_accuracy"] = (
            estimate.gold_correct / estimate.gold_answers
            if estimate.gold_answers
            else None
        )
        row["excluded"] = estimate.excluded
