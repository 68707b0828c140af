"""The promotion gate and alias moves in the MLflow model registry.

Aliases move with one registry call each (``set_registered_model_alias`` reassigns in place), so a
reader resolving ``@champion`` always finds a version, never a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from distilflow.config import PromotionParams

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION_TAG = "distilflow.previous_champion"
METRIC_TAG = "distilflow.primary_metric_value"
LATENCY_TAG = "distilflow.latency_p95_ms"


def model_name(task: str, role: str) -> str:
    return f"distilflow-{task}-{role}"


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: str | None = None
    champion_metric: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": self.reasons, "previous_champion_version": self.champion_version,
                "previous_champion_metric": self.champion_metric}


def current_champion(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def gate(metric: float, latency_p95_ms: float, champion_metric: float | None, rules: PromotionParams,
         metric_name: str) -> Decision:
    """Every rule is checked and reported, so a refusal lists all its reasons, not just the first."""
    decision = Decision(promote=True, champion_metric=champion_metric)
    if metric >= rules.min_metric:
        decision.reasons.append(f"{metric_name} {metric:.4f} ≥ floor {rules.min_metric:.4f}")
    else:
        decision.promote = False
        decision.reasons.append(f"{metric_name} {metric:.4f} < floor {rules.min_metric:.4f}")
    if champion_metric is None:
        decision.reasons.append("no current champion")
    elif metric >= champion_metric - rules.tolerance:
        decision.reasons.append(
            f"{metric_name} {metric:.4f} ≥ champion {champion_metric:.4f} − tolerance {rules.tolerance:.4f}")
    else:
        decision.promote = False
        decision.reasons.append(
            f"{metric_name} {metric:.4f} < champion {champion_metric:.4f} − tolerance {rules.tolerance:.4f}")
    if latency_p95_ms <= rules.max_latency_ms:
        decision.reasons.append(f"p95 latency {latency_p95_ms:.2f} ms ≤ budget {rules.max_latency_ms:.2f} ms")
    else:
        decision.promote = False
        decision.reasons.append(f"p95 latency {latency_p95_ms:.2f} ms > budget {rules.max_latency_ms:.2f} ms")
    return decision


def promote(client: MlflowClient, name: str, version: str) -> str | None:
    """Make ``version`` champion; remember the one it replaces for rollback. Returns that previous version."""
    previous = current_champion(client, name)
    previous_version = previous.version if previous is not None else None
    if previous_version == str(version):
        return previous_version
    if previous_version is not None:
        client.set_model_version_tag(name, str(version), PREVIOUS_CHAMPION_TAG, str(previous_version))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return previous_version


def rollback(client: MlflowClient, name: str) -> str:
    """Point champion back at the version it replaced; returns that version."""
    champion = current_champion(client, name)
    if champion is None:
        raise ValueError(f"{name} has no champion to roll back")
    previous = champion.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise ValueError(f"{name} v{champion.version} has no recorded previous champion")
    client.set_registered_model_alias(name, CHAMPION, previous)
    return str(previous)
