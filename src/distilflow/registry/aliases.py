"""Aliases in the MLflow model registry: reading the champion, moving it compare-and-set, rollback, listing.

A new student version gets the alias ``challenger``; it becomes ``champion`` only if the gate
(:mod:`distilflow.registry.gate`) passes. Three rules make ``@champion`` something a person can trust:

- **Errors are errors.** Only "this model or alias does not exist" means there is no champion. Any other
  registry failure (sqlite's "database is locked", an unreachable server, a refused login) raises
  :class:`RegistryUnavailable` before anything is written.
- **Promotion is compare-and-set.** :func:`promote` takes the champion version the gate compared against and
  re-reads the alias just before moving it, under the lock every writer of that registry shares
  (:mod:`distilflow.registry.lock`: beside an sqlite store, or a Prefect concurrency limit for a team server). If
  the champion changed in between, it raises :class:`ChampionChanged` and moves nothing.
- **A person's decision stands.** ``rollback`` marks the demoted version (``distilflow.rolled_back``); the gate
  refuses a marked version, and any other version with the same weight files (``distilflow.weights_md5``: a
  rollback is about the model, not a version number, so a settings change that re-registers the same weights
  does not bring it back); only ``distilflow promote VERSION --force`` does. A manual alias move
  (MLflow UI) is noticed because the registered model remembers which version distilflow itself last made
  champion (``distilflow.champion_set``): the version a person moved away from gets the same mark.

Aliases move with one registry call each (``set_registered_model_alias`` reassigns in place), so a reader
resolving ``@champion`` always finds a version, never a gap. A promotion writes its intent on the registered model
(``distilflow.champion_moving``) before it moves the alias and clears it after the last tag: a process killed in
between leaves the intent, and the next run finishes the move (or notes it never happened) instead of taking it for
a person's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from distilflow.errors import UserError
from distilflow.tracking.tags import (
    CHAMPION_MOVING_TAG,
    CHAMPION_SET_TAG,
    GATE_TAG,
    LATENCY_TAG,
    METRIC_NAME_TAG,
    METRIC_TAG,
    PREVIOUS_CHAMPION_TAG,
    PROMOTED_TAG,
    ROLLED_BACK_TAG,
    WEIGHTS_HASH_TAG,
)

CHAMPION = "champion"
CHALLENGER = "challenger"


class RegistryError(UserError, ValueError):
    """A registry operation a person asked for cannot be done (unknown version, nothing to roll back to)."""


class RegistryUnavailable(UserError, RuntimeError):
    """The registry could not be read or written (locked, unreachable, refused): nothing was changed."""


class ChampionChanged(RuntimeError):
    """The champion moved between the gate's read and the promotion: this promotion was abandoned."""


def model_name(task: str, role: str, prefix: str = "distilflow") -> str:
    """The registered model's name: ``register.model_prefix`` keeps pipelines that share a store apart."""
    return f"{prefix}-{task}-{role}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_missing(error: MlflowException) -> bool:
    """True only for "no such model / version / alias" (the alias case is INVALID_PARAMETER_VALUE in MLflow 3)."""
    if error.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    message = str(error.message).lower()
    return error.error_code == "INVALID_PARAMETER_VALUE" and "alias" in message and "not found" in message


def unavailable(error: MlflowException, doing: str) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"the model registry failed while {doing} ({error.error_code}: {str(error.message).splitlines()[0][:300]}); "
        "no alias or tag was changed. Retry once the store is reachable (sqlite: no other process holding it)."
    )


def current_champion(client: MlflowClient, name: str) -> Any | None:
    """The champion version, None if the model or alias does not exist; any other failure raises."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if is_missing(error):
            return None
        raise unavailable(error, f"reading {name}@{CHAMPION}") from error


def get_version(client: MlflowClient, name: str, version: str) -> Any:
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        if not is_missing(error):
            raise unavailable(error, f"reading {name} v{version}") from error
        known = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise RegistryError(f"{name} has no version {version!r} (versions: {known or 'none'})") from error


def all_versions(client: MlflowClient, name: str) -> list[Any]:
    try:
        return list(client.search_model_versions(f"name='{name}'"))
    except MlflowException as error:
        if is_missing(error):
            return []
        raise unavailable(error, f"listing the versions of {name}") from error


def rolled_back_twin(client: MlflowClient, name: str, candidate: Any) -> Any | None:
    """Another version with the candidate's weight files that a person rolled back, or None."""
    weights = candidate.tags.get(WEIGHTS_HASH_TAG)
    if not weights:
        return None  # registered before weights had their own fingerprint: only its own mark counts
    twins = [
        version
        for version in all_versions(client, name)
        if version.tags.get(WEIGHTS_HASH_TAG) == weights
        and ROLLED_BACK_TAG in version.tags
        and str(version.version) != str(candidate.version)
    ]
    return max(twins, key=lambda version: int(version.version)) if twins else None


def rollback_refusal(client: MlflowClient, name: str, candidate: Any) -> str | None:
    """Why a person's rollback forbids promoting ``candidate`` without --force, or None."""
    version = str(candidate.version)
    force = f"only `distilflow promote {version} --force` brings it back"
    if ROLLED_BACK_TAG in candidate.tags:
        return f"v{version} was rolled back ({candidate.tags[ROLLED_BACK_TAG]}); a person's decision stands: {force}"
    twin = rolled_back_twin(client, name, candidate)
    if twin is None:
        return None
    return (
        f"v{version} has the weights of v{twin.version}, which was rolled back ({twin.tags[ROLLED_BACK_TAG]}); "
        f"a rollback is about the model, not its version number or serving settings: {force}"
    )


def _registered_model(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        if is_missing(error):
            return None
        raise unavailable(error, f"reading {name}") from error


def finish_interrupted_move(client: MlflowClient, name: str) -> str | None:
    """Complete (or close) a promotion whose process died between moving @champion and writing its tags.

    Returns what was done, for the caller's report; None when no promotion was in progress.
    """
    registered = _registered_model(client, name)
    intent = ((registered.tags or {}) if registered is not None else {}).get(CHAMPION_MOVING_TAG)
    if registered is None or not intent:
        return None
    source, _, target = intent.partition("->")
    champion = str((registered.aliases or {}).get(CHAMPION, ""))
    if champion == target:
        if PROMOTED_TAG not in get_version(client, name, target).tags:
            client.set_model_version_tag(name, target, PROMOTED_TAG, f"{now()} by a promotion finished on restart")
        client.set_registered_model_tag(name, CHAMPION_SET_TAG, target)
        note = f"finished the promotion of v{target} that a killed run had begun"
    else:
        note = f"the promotion of v{target} (from {source or 'no champion'}) was killed before @{CHAMPION} moved"
    client.delete_registered_model_tag(name, CHAMPION_MOVING_TAG)
    return note


def mark_manual_moves(client: MlflowClient, name: str) -> str | None:
    """If a person moved @champion away from the version distilflow set, mark that version; returns it."""
    finish_interrupted_move(client, name)
    registered = _registered_model(client, name)
    if registered is None:
        return None
    ours = (registered.tags or {}).get(CHAMPION_SET_TAG)
    champion = (registered.aliases or {}).get(CHAMPION)
    if not ours or champion is None or str(champion) == ours:
        return None
    replaced = get_version(client, name, ours)
    if ROLLED_BACK_TAG not in replaced.tags:
        client.set_model_version_tag(
            name, ours, ROLLED_BACK_TAG, f"{now()} a person moved @{CHAMPION} to v{champion} (noticed by distilflow)"
        )
    client.set_registered_model_tag(name, CHAMPION_SET_TAG, str(champion))
    return ours


def promote(
    client: MlflowClient, name: str, version: str, expected: str | None, how: str = "gate", force: bool = False
) -> str | None:
    """Make ``version`` champion if the champion is still ``expected`` (the version the gate compared against).

    Returns the version it replaced. Raises :class:`ChampionChanged` (nothing moved) when the alias moved since
    the gate read it. A rolled-back version needs ``force``. The rollback target is tagged before the alias moves.
    """
    candidate = get_version(client, name, version)
    version = str(candidate.version)
    refusal = rollback_refusal(client, name, candidate)
    if refusal is not None and not force:
        raise RegistryError(f"{name} {refusal}")
    previous = current_champion(client, name)
    previous_version = str(previous.version) if previous is not None else None
    if previous_version == version:
        return previous_version
    if previous_version != expected:
        was, now_is = (f"v{v}" if v else "unset" for v in (expected, previous_version))
        raise ChampionChanged(
            f"{name}@{CHAMPION} changed while v{version} was being gated: it was {was}, it is now {now_is}. "
            "Promotion abandoned; nothing moved. Run the gate again against the new champion."
        )
    client.set_registered_model_tag(name, CHAMPION_MOVING_TAG, f"{previous_version or ''}->{version}")
    if previous_version is not None:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous_version)
    elif PREVIOUS_CHAMPION_TAG in candidate.tags:
        # A stale target from an earlier reign would send a later rollback somewhere nobody chose.
        client.delete_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG)
    if force and ROLLED_BACK_TAG in candidate.tags:
        client.delete_model_version_tag(name, version, ROLLED_BACK_TAG)
    client.set_registered_model_alias(name, CHAMPION, version)
    # After the alias: a version marked promoted has been champion (the gate's "best champion ever" reads it).
    client.set_model_version_tag(name, version, PROMOTED_TAG, f"{now()} by {how}")
    client.set_registered_model_tag(name, CHAMPION_SET_TAG, version)
    client.delete_registered_model_tag(name, CHAMPION_MOVING_TAG)
    return previous_version


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Point champion back at the version it replaced and mark the demoted one; returns (demoted, restored)."""
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
    client.set_model_version_tag(name, str(champion.version), ROLLED_BACK_TAG, f"{now()} back to v{previous}")
    client.set_registered_model_alias(name, CHAMPION, str(restored.version))
    client.set_registered_model_tag(name, CHAMPION_SET_TAG, str(restored.version))
    return str(champion.version), str(restored.version)


def restart_hint(name: str) -> str:
    return f"a running `make serve` keeps the version it loaded at start: restart it to serve the new {name}@{CHAMPION}"


def version_rows(client: MlflowClient, name: str) -> list[dict[str, str]]:
    """One row per version, newest first: aliases, metric, latency, gate outcome, provenance."""
    try:
        registered = client.get_registered_model(name)
    except MlflowException as error:
        if not is_missing(error):
            raise unavailable(error, f"reading {name}") from error
        raise RegistryError(f"no registered model {name!r} in this store") from error
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in sorted(all_versions(client, name), key=lambda v: -int(v.version)):
        tags = version.tags
        rows.append(
            {
                "version": str(version.version),
                "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
                "metric": f"{tags.get(METRIC_NAME_TAG, '?')}={float(tags.get(METRIC_TAG, 'nan')):.4f}",
                "p95_ms": f"{float(tags.get(LATENCY_TAG, 'nan')):.2f}",
                "gate": tags.get(GATE_TAG, "-") + ("/rolled-back" if ROLLED_BACK_TAG in tags else ""),
                "previous": tags.get(PREVIOUS_CHAMPION_TAG, "-"),
                "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
            }
        )
    return rows
