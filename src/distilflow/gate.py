"""The promotion gate: may this registered student version become ``@champion``?

A candidate must, on the primary dev metric of the artifact that will be served:

- reach the absolute floor (``register.promotion.min_metric``);
- beat the task's trivial baseline (majority class, or the mean score for regression, on the same dev set) by
  ``register.promotion.baseline_margin``: a constant model must never pass;
- stay within ``tolerance`` of the current champion **and** of the best version that has ever been champion
  (rolled-back ones excluded), so a run of small drops cannot walk quality down to the floor;
- have been scored on the same data version (DVC md5 of data/raw) as the champion: scores on different dev
  data do not compare, so the gate refuses and says so (``distilflow promote VERSION --force`` overrules);
- not have been rolled back by a person;
- stay within the latency budget.

Every rule is checked and every reason is recorded, on the version (tags) and in the register stage's report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient

from distilflow.config import PromotionParams
from distilflow.registry import (
    BASELINE_TAG,
    DATA_TAG,
    GATE_REASONS_TAG,
    GATE_TAG,
    LATENCY_TAG,
    METRIC_NAME_TAG,
    METRIC_TAG,
    PROMOTED_TAG,
    ROLLED_BACK_TAG,
    SERVED_METRIC_TAG,
    all_versions,
    current_champion,
    get_version,
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
) -> Decision:
    """Every rule is checked and reported, so a refusal lists all its reasons, not just the first.

    ``baseline`` is the trivial model's metric on the same dev set (None: not checked); ``best`` the version and
    metric of the best model that has ever been champion, when that is not the current champion.
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
        decision.reasons.append("no current champion")
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
    if ROLLED_BACK_TAG in candidate.tags:
        decision.refuse(
            f"v{candidate.version} was rolled back ({candidate.tags[ROLLED_BACK_TAG]}); a person's decision stands: "
            f"only `distilflow promote {candidate.version} --force` brings it back"
        )
    return decision


def record_decision(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    client.set_model_version_tag(name, str(version), GATE_TAG, "passed" if decision.promote else "refused")
    client.set_model_version_tag(name, str(version), GATE_REASONS_TAG, "; ".join(decision.reasons)[:4000])
