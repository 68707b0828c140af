"""Aliases in the MLflow model registry: reading the champion, moving it compare-and-set, rollback, listing.

A new student version gets the alias ``challenger``; it becomes ``champion`` only if the gate
(:mod:`distilflow.gate`) passes. Three rules make ``@champion`` something a person can trust:

- **Errors are errors.** Only "this model or alias does not exist" means there is no champion. Any other
  registry failure (sqlite's "database is locked", an unreachable server, a refused login) raises
  :class:`RegistryUnavailable` before anything is written.
- **Promotion is compare-and-set.** :func:`promote` takes the champion version the gate compared against and
  re-reads the alias just before moving it, under a file lock (``.distilflow/registry.lock``) that serialises
  promotions from this project folder. If the champion changed in between, it raises :class:`ChampionChanged`
  and moves nothing.
- **A person's decision stands.** ``rollback`` marks the demoted version (``distilflow.rolled_back``); the gate
  refuses a marked version, so only ``distilflow promote VERSION --force`` brings it back. A manual alias move
  (MLflow UI) is noticed because the registered model remembers which version distilflow itself last made
  champion (``distilflow.champion_set``): the version a person moved away from gets the same mark.

Aliases move with one registry call each (``set_registered_model_alias`` reassigns in place), so a reader
resolving ``@champion`` always finds a version, never a gap.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from distilflow.mlflow_tags import (
    CHAMPION_SET_TAG,
    GATE_TAG,
    LATENCY_TAG,
    METRIC_NAME_TAG,
    METRIC_TAG,
    PREVIOUS_CHAMPION_TAG,
    PROMOTED_TAG,
    ROLLED_BACK_TAG,
)

CHAMPION = "champion"
CHALLENGER = "challenger"
LOCK_FILE = Path(".distilflow") / "registry.lock"


class RegistryError(ValueError):
    """A registry operation a person asked for cannot be done (unknown version, nothing to roll back to)."""


class RegistryUnavailable(RuntimeError):
    """The registry could not be read or written (locked, unreachable, refused): nothing was changed."""


class ChampionChanged(RuntimeError):
    """The champion moved between the gate's read and the promotion: this promotion was abandoned."""


def model_name(task: str, role: str) -> str:
    return f"distilflow-{task}-{role}"


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


@contextlib.contextmanager
def registry_lock(root: Path) -> Iterator[None]:
    """Serialise gate-and-promote from one project folder (released by the kernel if the holder dies)."""
    path = Path(root) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def mark_manual_moves(client: MlflowClient, name: str) -> str | None:
    """If a person moved @champion away from the version distilflow set, mark that version; returns it."""
    try:
        registered = client.get_registered_model(name)
    except MlflowException as error:
        if is_missing(error):
            return None
        raise unavailable(error, f"reading {name}") from error
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
    if ROLLED_BACK_TAG in candidate.tags and not force:
        raise RegistryError(
            f"{name} v{version} was rolled back ({candidate.tags[ROLLED_BACK_TAG]}); "
            f"only `distilflow promote {version} --force` brings it back"
        )
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
    if previous_version is not None:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous_version)
    elif PREVIOUS_CHAMPION_TAG in candidate.tags:
        # A stale target from an earlier reign would send a later rollback somewhere nobody chose.
        client.delete_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG)
    if force and ROLLED_BACK_TAG in candidate.tags:
        client.delete_model_version_tag(name, version, ROLLED_BACK_TAG)
    client.set_model_version_tag(name, version, PROMOTED_TAG, f"{now()} by {how}")
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, CHAMPION_SET_TAG, version)
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
