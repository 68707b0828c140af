"""``python -m distilflow.orchestration.dvc_child ARGS``: the ``dvc`` CLI, in a process that dies with its parent.

The flow starts DVC this way. ``kill -9`` of the flow then takes ``dvc repro`` down at once (and the stage
process under it, which does the same for itself in ``distilflow stage``), so no orphan keeps writing outputs
into a workspace whose lock has just been released.
"""

from __future__ import annotations

import sys

from distilflow.runtime.locking import die_with_parent


def main(argv: list[str]) -> int:
    die_with_parent()
    from dvc.cli import main as dvc_main

    return int(dvc_main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
