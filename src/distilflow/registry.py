"""The promotion gate and alias moves in the MLflow model registry.

A new student version gets the alias ``challenger``; it becomes ``champion`` only if the gate passes:
its primary dev metric is at least an absolute floor and at least the current champion's minus a tolerance,
and its latency is within budget. Every rule is checked and every reason is recorded, on the version (tags)
and in the register stage's report.

Aliases move with one registry call each (``set_registered_model_alias`` reassigns in place), so a reader
resolving ``@champion`` always finds a version, never a gap. The version a promotion replaced is recorded
in a tag on the new champion, which is what ``rollback`` follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from distilflow.config import PromotionParams

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION_TAG = "distilflow.previous_champion"
METRIC_TAG = "distilflow.primary_metric_value"
METRIC_NAME_TAG = "distilflow.primary_metric"
LATENCY_TAG = "distilflow.latency_p95_ms"
DATA_TAG = "dvc_data_md5"
GATE_TAG = "distilflow.gate"
GATE_REASONS_TAG = "distilflow.gate_reasons"
PROMOTED_TAG = "distilflow.promoted"
ROLLED_BACK_TAG = "distilflow.rolled_back"


class RegistryError(ValueError):
    """A registry operation a person asked for cannot be done (unknown version, nothing to roll back to)."""


def model_name(task: str, role: str) -> str:
    return f"distilflow-{task}-{role}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    champion_version: str | None = None
    champion_metric: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reasons": self.reasons,
            "previous_champion_version": self.champion_version,
            "previous_champion_metric": self.champion_metric,
        }


def current_champion(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def get_version(client: MlflowClient, name: str, version: str) -> Any:
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise RegistryError(f"{name} has no version {version!r} (versions: {known or 'none'})") from error


def gate(
    metric: float, latency_p95_ms: float, champion_metric: float | None, rules: PromotionParams, metric_name: str
) -> Decision:
    """Every rule is checked and reported, so a refusal lists all its reasons, not just the first."""
    decision = Decision(promote=True, champion_metric=champion_metric)
    if math.isnan(metric):
        decision.promote = False
        decision.reasons.append(f"{metric_name} is not a number")
    elif metric >= rules.min_metric:
        decision.reasons.append(f"{metric_name} {metric:.4f} ≥ floor {rules.min_metric:.4f}")
    else:
        decision.promote = False
        decision.reasons.append(f"{metric_name} {metric:.4f} < floor {rules.min_metric:.4f}")
    if champion_metric is None:
        decision.reasons.append("no current champion")
    elif metric >= champion_metric - rules.tolerance:
        decision.reasons.append(
            f"{metric_name} {metric:.4f} ≥ champion {champion_metric:.4f} − tolerance {rules.tolerance:.4f}"
        )
    else:
        decision.promote = False
        decision.reasons.append(
            f"{metric_name} {metric:.4f} < champion {champion_metric:.4f} − tolerance {rules.tolerance:.4f}"
        )
    if math.isnan(latency_p95_ms):
        decision.promote = False
        decision.reasons.append("no latency measurement")
    elif latency_p95_ms <= rules.max_latency_ms:
        decision.reasons.append(f"p95 latency {latency_p95_ms:.2f} ms ≤ budget {rules.max_latency_ms:.2f} ms")
    else:
        decision.promote = False
        decision.reasons.append(f"p95 latency {latency_p95_ms:.2f} ms > budget {rules.max_latency_ms:.2f} ms")
    return decision


def _tag_float(version: Any, key: str) -> float:
    try:
        return float(version.tags[key])
    except (KeyError, ValueError):
        return math.nan


def gate_version(client: MlflowClient, name: str, version: str, rules: PromotionParams) -> Decision:
    """The gate for a registered version against the current champion, from the metrics tagged on both."""
    candidate = get_version(client, name, version)
    metric_name = candidate.tags.get(METRIC_NAME_TAG, "primary metric")
    champion = current_champion(client, name)
    if champion is not None and champion.version == candidate.version:
        champion = None  # re-promoting the champion compares it with nothing but the floor
    champion_metric = _tag_float(champion, METRIC_TAG) if champion is not None else None
    decision = gate(
        _tag_float(candidate, METRIC_TAG),
        _tag_float(candidate, LATENCY_TAG),
        None if champion_metric is not None and math.isnan(champion_metric) else champion_metric,
        rules,
        metric_name,
    )
    if champion is not None:
        decision.champion_version = str(champion.version)
        if champion_metric is not None and math.isnan(champion_metric):
            decision.promote = False
            decision.reasons.append(
                f"champion v{champion.version} has no recorded {metric_name}; cannot show the candidate is not worse"
            )
        if champion.tags.get(DATA_TAG) != candidate.tags.get(DATA_TAG):
            # Still compared (a drop on new data is worth stopping), but a person should know the scores differ
            # in what they measure.
            decision.reasons.append(
                f"note: champion v{champion.version} was scored on different data "
                f"({champion.tags.get(DATA_TAG)} vs {candidate.tags.get(DATA_TAG)})"
            )
    return decision


def record_decision(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    client.set_model_version_tag(name, str(version), GATE_TAG, "passed" if decision.promote else "refused")
    client.set_model_version_tag(name, str(version), GATE_REASONS_TAG, "; ".join(decision.reasons)[:4000])


def promote(client: MlflowClient, name: str, version: str, how: str = "gate") -> str | None:
    """Make ``version`` champion; remember the one it replaces for rollback. Returns that previous version.

    The tag is written before the alias moves, so the moment a version is champion its rollback target is known.
    """
    candidate = get_version(client, name, version)
    version = str(candidate.version)
    previous = current_champion(client, name)
    previous_version = str(previous.version) if previous is not None else None
    if previous_version == version:
        return previous_version
    if previous_version is not None:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous_version)
    elif PREVIOUS_CHAMPION_TAG in candidate.tags:
        # A stale target from an earlier reign would send a later rollback somewhere nobody chose.
        client.delete_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG)
    client.set_model_version_tag(name, version, PROMOTED_TAG, f"{_now()} by {how}")
    client.set_registered_model_alias(name, CHAMPION, version)
    return previous_version


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Point champion back at the version it replaced; returns (demoted version, restored version)."""
    champion = current_champion(client, name)
    if champion is None:
        raise RegistryError(f"{name} has no champion to roll back")
    previous = champion.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RegistryError(
            f"{name}@champion (v{champion.version}) has no recorded previous champion: "
            "it was the first champion, or was itself restored by a rollback"
        )
    restored = get_version(client, name, previous)
    client.set_model_version_tag(name, str(champion.version), ROLLED_BACK_TAG, f"{_now()} back to v{previous}")
    client.set_registered_model_alias(name, CHAMPION, str(restored.version))
    return str(champion.version), str(restored.version)


def version_rows(client: MlflowClient, name: str) -> list[dict[str, str]]:
    """One row per version, newest first: aliases, metric, latency, gate outcome, provenance."""
    try:
        registered = client.get_registered_model(name)
    except MlflowException as error:
        raise RegistryError(f"no registered model {name!r} in this store") from error
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version)):
        tags = version.tags
        rows.append(
            {
                "version": str(version.version),
                "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
                "metric": f"{tags.get(METRIC_NAME_TAG, '?')}={float(tags.get(METRIC_TAG, 'nan')):.4f}",
                "p95_ms": f"{float(tags.get(LATENCY_TAG, 'nan')):.2f}",
                "gate": tags.get(GATE_TAG, "-"),
                "previous": tags.get(PREVIOUS_CHAMPION_TAG, "-"),
                "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
            }
        )
    return rows
