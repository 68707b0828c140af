"""kill -9 of a training stage mid-epoch, and a DVC cache file corrupted under a model: the next ``dvc repro`` ends
exactly where a clean run ends (the same model files, the same registry), never on a half-written or wrong output.

Both cases reuse the session's reproduced pipeline (a committed copy of it), so they run in the default suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from distilflow.registry.registration import weights_hash
from distilflow.runtime.warm import HOST_ENV
from tests.conftest import committed_copy, run, test_env
from tests.faults.test_register_faults import INJECT
from tests.reliability_record import record

STUDENT = "distilflow-sst2-student"


def lock_out(root: Path, stage: str, path: str) -> dict[str, Any]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]
    return dict(next(out for out in lock["outs"] if out["path"] == path))


def out_of_date(root: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], root).stdout))


def registry(root: Path) -> dict[str, Any]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registered = client.get_registered_model(STUDENT)
    versions = sorted(str(version.version) for version in client.search_model_versions(f"name='{STUDENT}'"))
    return {"aliases": dict(registered.aliases), "versions": versions}


def cache_file(root: Path, directory_md5: str, name: str) -> Path:
    """The DVC cache object of file ``name`` inside the directory output recorded as ``directory_md5``."""
    cache = Path(run(["dvc", "cache", "dir"], root).stdout.strip())
    digest = directory_md5.removesuffix(".dir")
    listing = json.loads((cache / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir").read_text())
    file_md5 = next(entry["md5"] for entry in listing if entry["relpath"] == name)
    return cache / "files" / "md5" / file_md5[:2] / file_md5[2:]


def test_a_killed_distill_and_a_corrupt_cache_file_both_end_as_a_clean_run(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "project")
    clean_student, clean_registry = lock_out(root, "distill", "models/student"), registry(root)
    clean_weights = weights_hash(root / "models" / "student")  # export timings differ run to run

    # 1. kill -9 of the distill stage right after its first optimizer step (a fresh process, not the warm host).
    env = {key: value for key, value in test_env(root).items() if key != HOST_ENV}
    env.update(PYTHONPATH=os.pathsep.join([str(INJECT), env.get("PYTHONPATH", "")]))
    env.update(DISTILFLOW_KILL_AFTER="torch.optim.adamw:AdamW.step")
    killed = subprocess.run(["dvc", "repro", "-f", "-s", "distill"], cwd=root, env=env, capture_output=True, text=True)
    assert killed.returncode != 0 and "SIGKILL after torch.optim.adamw:AdamW.step" in killed.stderr, killed.stderr[
        -2000:
    ]
    assert "distill" in out_of_date(root)  # DVC knows the output is not the recorded one
    assert registry(root) == clean_registry
    run(["dvc", "repro"], root)
    assert weights_hash(root / "models" / "student") == clean_weights  # the same model files, byte for byte
    assert registry(root) == clean_registry and out_of_date(root) == set()

    # 2. The cache object behind the student's weights is corrupted, then the workspace copy is restored from it.
    corrupt = cache_file(root, clean_student["md5"], "model.safetensors")
    corrupt.chmod(0o644)
    corrupt.write_bytes(b"\0" * 1024)
    shutil.rmtree(root / "models" / "student")
    run(["dvc", "checkout", "models/student"], root, check=False)
    assert "distill" in out_of_date(root)  # the restored bytes are not the recorded ones: DVC says so
    repro = run(["dvc", "repro"], root)
    assert "Running stage 'distill'" in repro.stdout, repro.stdout[-3000:]  # recomputed, not restored from the cache
    assert weights_hash(root / "models" / "student") == clean_weights
    assert registry(root) == clean_registry and out_of_date(root) == set()
    record("fault-distill-kill-and-corrupt-cache", {"injected": 2, "survived": 2})
