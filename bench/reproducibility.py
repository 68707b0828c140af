"""Is CPU training bitwise reproducible here? Train twice from scratch, same code, data, params and seed; compare.

Two fresh shrunken workspaces (the smoke profile's settings, as the tests make theirs:
distilflow.orchestration.scratch_workspace;
the tests' extra register settings do not reach distill) each run
``dvc repro distill`` (ingest through finetune, pretrain and distill with its exports), one after the other. Every
file under models/teacher and models/student is hashed and compared between the two.

    python bench/reproducibility.py [--out bench/results/reproducibility-tiny.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import RESULTS_DIR, ROOT
from distilflow.orchestration.scratch_workspace import make_workspace, run_checked, smoke_profile
from distilflow.runtime.process import machine_facts


def model_files(root: Path) -> dict[str, str]:
    return {
        file.relative_to(root).as_posix(): hashlib.md5(file.read_bytes()).hexdigest()
        for role in ("teacher", "student")
        for file in sorted((root / "models" / role).rglob("*"))
        if file.is_file()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "reproducibility-tiny.json")
    args = parser.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("first", "second"):
            root = make_workspace(ROOT, Path(tmp) / name, smoke_profile(ROOT))
            start = time.perf_counter()
            run_checked(["dvc", "repro", "distill"], root, timeout=3600)
            runs[name] = {"seconds": round(time.perf_counter() - start, 1), "md5": model_files(root)}
    first, second = runs["first"]["md5"], runs["second"]["md5"]
    files = sorted(set(first) | set(second))
    result = {
        "command": "python " + shlex.join(["bench/reproducibility.py", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "identical": [file for file in files if first.get(file) == second.get(file)],
        "different": [file for file in files if first.get(file) != second.get(file)],
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: result[key] for key in ("identical", "different")}, indent=1))


if __name__ == "__main__":
    main()
