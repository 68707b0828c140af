"""The promotion gate: may this registered student version become ``@champion``?

A candidate must, on the primary dev metric of the artifact that will be served:

- reach the absolute floor (``register.promotion.min_metric``);
- beat the task's trivial baseline (majority class, or the mean score for regression, on the same dev set) by
  ``register.promotion.baseline_margin``: a constant model must never pass;
- stay within ``tolerance`` of the current champion **and** of the best version that has ever been champion
  (rolled-back ones excluded), so a run of small drops cannot walk quality down to the floor;
- have been scored on the same data version (DVC md5 of data/raw) as the champion: scores on different dev
  data do not compare, so the gate refuses and says so (``distilflow promote VERSION --force`` overrules);
- not have been rolled back by a person, nor share its weight files with a version a person rolled back;
- stay within the latency budget.

Dev sets can be small (MRPC: 408 pairs), so each comparison is also a paired bootstrap over the dev examples
(:mod:`distilflow.registry.bootstrap`), on the per-example predictions each version recorded at registration
(``distilflow.dev_predictions``). The win over the trivial baseline must hold: metric − baseline > margin in at
least ``confidence`` of the resamples. Against the champion and the best champion ever, the probability that the
candidate is better and the interval of the difference are reported beside the tolerance rule, which decides:
a tolerance read as "within noise" would let a run of small drops walk quality down.

Every rule is checked and every reason is recorded, on the version (tags) and in the register stage's report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mlflow import MlflowClient

from distilflow.config.release_params import PromotionParams
from distilflow.registry import served_scoring as dev_scoring
from distilflow.registry.aliases import all_versions, current_champion, get_version, rollback_refusal
from distilflow.registry.bootstrap import paired_bootstrap
from distilflow.tracking.tags import (
    BASELINE_TAG,
    DATA_TAG,
    DEV_PREDICTIONS_TAG,
    GATE_BOOTSTRAP_TAG,
    GATE_REASONS_TAG,
    GATE_TAG,
    LATENCY_TAG,
    METRIC_NAME_TAG,
    METRIC_TAG,
    PROMOTED_TAG,
    ROLLED_BACK_TAG,
    SERVED_METRIC_TAG,
)


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: str | None = None
    champion_metric: float | None = None
    best_version: str | None = None
    best_metric: float | None = None
    metric: float | None = None
    baseline_metric: float | None = None
    bootstrap: dict[str, dict[str, Any]] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.promote = False
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reasons": self.reasons,
            "metric": self.metric,
            "baseline_metric": self.baseline_metric,
            "previous_champion_version": self.champion_version,
            "previous_champion_metric": self.champion_metric,
            "best_champion_version": self.best_version,
            "best_champion_metric": self.best_metric,
            "bootstrap": self.bootstrap,
        }


def _compare(decision: Decision, metric: float, other: float, label: str, tolerance: float, name: str) -> None:
    if metric >= other - tolerance:
        decision.reasons.append(f"{name} {metric:.4f} ≥ {label} {other:.4f} − tolerance {tolerance:.4f}")
    else:
        decision.refuse(f"{name} {metric:.4f} < {label} {other:.4f} − tolerance {tolerance:.4f}")


def gate(
    metric: float,
    latency_p95_ms: float,
    champion_metric: float | None,
    rules: PromotionParams,
    metric_name: str,
    baseline: float | None = None,
    best: tuple[str, float] | None = None,
    uncompared_champion: str | None = None,
) -> Decision:
    """Every rule is checked and reported, so a refusal lists all its reasons, not just the first.

    ``baseline`` is the trivial model's metric on the same dev set (None: not checked); ``best`` the version and
    metric of the best model that has ever been champion, when that is not the current champion;
    ``uncompared_champion`` why a champion that exists is not compared (its refusal is the caller's to add).
    """
    decision = Decision(promote=True, champion_metric=champion_metric, metric=metric, baseline_metric=baseline)
    if math.isnan(metric):
        decision.refuse(f"{metric_name} is not a number")
        metric = -math.inf
    elif metric >= rules.min_metric:
        decision.reasons.append(f"{metric_name} {metric:.4f} ≥ floor {rules.min_metric:.4f}")
    else:
        decision.refuse(f"{metric_name} {metric:.4f} < floor {rules.min_metric:.4f}")
    if baseline is not None:
        bar = f"trivial baseline {baseline:.4f} + margin {rules.baseline_margin:.4f}"
        if math.isnan(baseline):
            decision.refuse("no trivial baseline recorded for this version (dev set missing at registration)")
        elif metric >= baseline + rules.baseline_margin:
            decision.reasons.append(f"{metric_name} {metric:.4f} ≥ {bar}")
        else:
            decision.refuse(f"{metric_name} {metric:.4f} < {bar}: no better than always predicting one answer")
    if champion_metric is None:
        decision.reasons.append(uncompared_champion or "no current champion")
    else:
        _compare(decision, metric, champion_metric, "champion", rules.tolerance, metric_name)
    if best is not None:
        decision.best_version, decision.best_metric = best
        _compare(decision, metric, best[1], f"best champion ever v{best[0]}", rules.tolerance, metric_name)
    if math.isnan(latency_p95_ms):
        decision.refuse("no latency measurement")
    elif latency_p95_ms <= rules.max_latency_ms:
        decision.reasons.append(f"p95 latency {latency_p95_ms:.2f} ms ≤ budget {rules.max_latency_ms:.2f} ms")
    else:
        decision.refuse(f"p95 latency {latency_p95_ms:.2f} ms > budget {rules.max_latency_ms:.2f} ms")
    return decision


def tag_float(version: Any, key: str) -> float:
    try:
        return float(version.tags[key])
    except (KeyError, ValueError):
        return math.nan


def gated_metric(version: Any) -> float:
    """The metric of the artifact a version serves (its export's own), else of its fp32 form."""
    served = tag_float(version, SERVED_METRIC_TAG)
    return served if not math.isnan(served) else tag_float(version, METRIC_TAG)


def best_champion(client: MlflowClient, name: str, candidate: Any, champion: Any | None) -> tuple[str, float] | None:
    """The best version that has ever been champion on the candidate's data, rolled-back ones excluded."""
    data = candidate.tags.get(DATA_TAG)
    ever = [
        version
        for version in all_versions(client, name)
        if (PROMOTED_TAG in version.tags or (champion is not None and version.version == champion.version))
        and ROLLED_BACK_TAG not in version.tags
        and version.version != candidate.version
        and version.tags.get(DATA_TAG) == data
        and not math.isnan(gated_metric(version))
    ]
    if not ever:
        return None
    best = max(ever, key=gated_metric)
    return str(best.version), gated_metric(best)


def dev_record(version: Any) -> dict[str, Any] | None:
    """The per-example dev answers a version recorded at registration (labels, predictions, task), or None."""
    import mlflow

    uri = version.tags.get(DEV_PREDICTIONS_TAG)
    return dict(mlflow.artifacts.load_dict(uri)) if uri else None


def _baseline_bootstrap(decision: Decision, record: dict[str, Any], rules: PromotionParams, metric_name: str) -> None:
    """metric − baseline > margin must hold in at least ``confidence`` of the paired resamples."""
    from distilflow.tasks import get_task

    labels, predictions = np.asarray(record["labels"]), np.asarray(record["predictions"])
    constant = dev_scoring.baseline_predictions(get_task(record["task"]), labels)
    result = paired_bootstrap(
        metric_name, predictions, constant, labels, rules.bootstrap_resamples, rules.confidence, rules.baseline_margin
    )
    decision.bootstrap["baseline"] = result.as_dict()
    claim = (
        f"{metric_name} − trivial baseline > margin {rules.baseline_margin:.4f} in {result.p_above:.1%} of "
        f"{result.resamples} paired resamples of {result.examples} dev examples"
    )
    if result.p_above >= rules.confidence:
        decision.reasons.append(f"{claim} ≥ {rules.confidence:.0%}")
    else:
        decision.refuse(f"{claim} < {rules.confidence:.0%}: the win over the trivial baseline is within noise")


def bootstrap_checks(
    decision: Decision, candidate: Any, others: dict[str, Any], rules: PromotionParams, metric_name: str
) -> None:
    """The paired bootstrap against the baseline (a rule) and against each of ``others`` (reported)."""
    record = dev_record(candidate)
    if record is None:
        decision.refuse(
            f"v{candidate.version} recorded no per-example dev predictions: cannot tell its win over the trivial "
            "baseline from noise"
        )
        return
    _baseline_bootstrap(decision, record, rules, metric_name)
    for label, version in others.items():
        other = dev_record(version)
        if other is None or other["labels"] != record["labels"]:
            decision.reasons.append(f"note: no paired bootstrap against {label} (no dev predictions on these rows)")
            continue
        result = paired_bootstrap(
            metric_name,
            np.asarray(record["predictions"]),
            np.asarray(other["predictions"]),
            np.asarray(record["labels"]),
            rules.bootstrap_resamples,
            rules.confidence,
        )
        decision.bootstrap[label] = {"version": str(version.version), **result.as_dict()}
        decision.reasons.append(f"against {label}: {result.describe(label)}")


def gate_version(client: MlflowClient, name: str, version: str, rules: PromotionParams) -> Decision:
    """The gate for a registered version against the current and the best-ever champion, from their tags."""
    candidate = get_version(client, name, version)
    metric_name = candidate.tags.get(METRIC_NAME_TAG, "primary metric")
    champion = current_champion(client, name)
    if champion is not None and champion.version == candidate.version:
        champion = None  # re-promoting the champion compares it with nothing but the floor
    champion_metric = gated_metric(champion) if champion is not None else None
    best = best_champion(client, name, candidate, champion)
    if best is not None and champion is not None and best[0] == str(champion.version):
        best = None  # the current champion is the best: one comparison, not two
    same_data = champion is None or champion.tags.get(DATA_TAG) == candidate.tags.get(DATA_TAG)
    decision = gate(
        gated_metric(candidate),
        tag_float(candidate, LATENCY_TAG),
        champion_metric if same_data and champion_metric is not None and not math.isnan(champion_metric) else None,
        rules,
        metric_name,
        baseline=tag_float(candidate, BASELINE_TAG),
        best=best,
        uncompared_champion=(
            f"champion v{champion.version} not compared (see below)" if champion is not None and not same_data else None
        ),
    )
    if champion is not None:
        decision.champion_version = str(champion.version)
        decision.champion_metric = champion_metric
        if champion_metric is not None and math.isnan(champion_metric):
            decision.refuse(
                f"champion v{champion.version} has no recorded {metric_name}; cannot show the candidate is not worse"
            )
        if not same_data:
            decision.refuse(
                f"champion v{champion.version} was scored on another data version "
                f"({champion.tags.get(DATA_TAG)} vs {candidate.tags.get(DATA_TAG)}): the scores do not compare. "
                "Re-score the champion on this data (re-run the pipeline at its commit with this data) "
                f"or promote by hand: `distilflow promote {candidate.version} --force`"
            )
    others = {f"champion v{champion.version}": champion} if champion is not None and same_data else {}
    if best is not None:
        others[f"best champion ever v{best[0]}"] = get_version(client, name, best[0])
    bootstrap_checks(decision, candidate, others, rules, metric_name)
    refusal = rollback_refusal(client, name, candidate)
    if refusal is not None:
        decision.refuse(refusal)
    return decision


def record_decision(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    client.set_model_version_tag(name, str(version), GATE_TAG, "passed" if decision.promote else "refused")
    client.set_model_version_tag(name, str(version), GATE_REASONS_TAG, "; ".join(decision.reasons)[:4000])
    if decision.bootstrap:
        client.set_model_version_tag(name, str(version), GATE_BOOTSTRAP_TAG, json.dumps(decision.bootstrap)[:4000])
