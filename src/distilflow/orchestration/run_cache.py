"""``dvc push --run-cache``, completed: the run-cache entries and every file they restore.

DVC 3.67's ``dvc push --run-cache`` uploads the entries and the objects of the outputs DVC caches, but not those of a
stage's git-tracked metrics and plots (``cache: false``), although restoring the stage needs them: a second machine
then finds the entry, misses ``metrics/tokenize.json``, and runs the stage again. Measured on the tiny pipeline: the
command left 21 such files behind, and every stage but one ran again on the second machine.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Pushed:
    uploaded: int  # objects sent to the remote
    stale: int  # entries whose outputs this cache no longer holds (gc'd, or an older clone's): a machine that
    # finds one runs the stage, as DVC does for any entry it cannot restore


def push_run_cache(root: Path, remote: str | None = None) -> Pushed:
    """Upload the run-cache entries of the project at ``root`` and every object they name. Raises when an object
    could not be uploaded."""
    from dvc.exceptions import CollectCacheError
    from dvc.repo import Repo

    # DVC builds a stage from a run-cache entry relative to the working directory: run it from the project, as the
    # command below does in its own process (a flow's other threads keep their directory).
    with contextlib.chdir(root), Repo(str(root)) as repo:
        entries = repo.stage_cache.push(remote)
        wanted: dict[Any, set[Any]] = defaultdict(set)
        stale = 0
        for entry in entries:
            try:
                used = repo.stage_cache.get_used_objs([entry], push=True)
            except CollectCacheError:
                stale += 1
                continue
            for odb, objects in used.items():
                wanted[odb] |= objects
        uploaded = 0
        for odb, objects in wanted.items():
            result = repo.cloud.push(objects, remote=remote, odb=odb)
            if result.failed:
                raise RuntimeError(f"run-cache push to {remote or 'the default remote'}: {len(result.failed)} failed")
            uploaded += len(result.transferred)
    return Pushed(uploaded, stale)


def command(remote: str | None = None) -> list[str]:
    """The command that runs :func:`push_run_cache` in the project folder it is started in."""
    return [sys.executable, "-m", __name__, *(["--remote", remote] if remote else [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dvc push --run-cache, with the files its entries restore")
    parser.add_argument("--remote", default=None, help="a DVC remote name (default: the project's default remote)")
    args = parser.parse_args(argv)
    pushed = push_run_cache(Path.cwd(), args.remote)
    stale = f"; {pushed.stale} older entries left without their files (no longer in the local cache)"
    print(f"run-cache pushed: {pushed.uploaded} files uploaded{stale if pushed.stale else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
