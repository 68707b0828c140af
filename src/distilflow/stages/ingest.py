"""ingest: bring the chosen source into ``data/raw/`` in the GLUE download layout, byte for byte.

Files are copied verbatim (optionally cut to the first N rows, whole lines only) rather than parsed,
so that validation sees exactly what the user has: encoding errors and ragged rows survive to be reported.

DVC's md5 of ``data/raw`` is the project's data version, so ``data/raw`` holds only what the content decides
(the split files and a manifest of their hashes and row counts). Where the data was read from and which run read
it go to ``reports/ingest/`` and the MLflow run: two clones at different paths, or two runs, of the same files
are one data version.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from distilflow.config.params import Params
from distilflow.errors import UserError
from distilflow.paths import Paths
from distilflow.tasks import GlueTask, get_task
from distilflow.tracking.runs import dvc_directory_md5, stage_run, write_json, write_lineage
from distilflow.tracking.tags import DATA_TAG


class IngestError(UserError, RuntimeError):
    """The data source is missing or cannot be read."""


def source_dir(params: Params, paths: Paths, task: GlueTask) -> Path:
    """data.path, resolved against the project folder; it must hold the task's split files."""
    folder = Path(params.data.path)
    if not folder.is_absolute():
        folder = paths.root / folder
    if not folder.is_dir():
        raise IngestError(f"data.path {params.data.path!r} is not a folder (resolved to {folder})")
    missing = [f"{split}.tsv" for split in task.splits if not (folder / f"{split}.tsv").is_file()]
    if missing:
        shipped = sorted(entry.name for entry in paths.demo_dir.iterdir() if entry.is_dir())
        raise IngestError(
            f"{folder} lacks {', '.join(missing)}: a {task.dir_name} folder needs {', '.join(task.splits)}.tsv. "
            f"Point data.path at the task's GLUE folder (demos shipped in {paths.demo_dir}: {', '.join(shipped)})"
        )
    return folder


def copy_rows(source: Path, target: Path, task: GlueTask, max_rows: int | None) -> int:
    """Copy whole lines; returns the number of data rows written."""
    if max_rows is None:
        shutil.copyfile(source, target)
        with source.open("rb") as handle:
            lines = sum(1 for _ in handle)
        return lines - (1 if task.header else 0)
    keep = max_rows + (1 if task.header else 0)
    with source.open("rb") as reader, target.open("wb") as writer:
        written = 0
        for written, line in enumerate(reader, start=1):
            if written > keep:
                written -= 1
                break
            writer.write(line)
    return written - (1 if task.header else 0)


def from_hub(task: GlueTask, target: Path, params: Params) -> tuple[dict[str, int], str]:
    """Download ``nyu-mll/glue`` at ``data.revision`` (or the latest) in the GLUE file layout; needs a network.

    Returns the rows per split and the commit it resolved, which the manifest records.
    """
    import datasets

    from distilflow.data.glue_io import write_split

    try:
        from huggingface_hub import HfApi

        revision = HfApi().dataset_info("nyu-mll/glue", revision=params.data.revision).sha
        dataset = datasets.load_dataset("nyu-mll/glue", task.name, revision=revision)
    except Exception as error:  # the hub raises many types; all mean the same to the user
        raise IngestError(
            f"could not download nyu-mll/glue/{task.name} from the Hugging Face hub ({type(error).__name__}: "
            f"{error}). Without a network use data.source: local with data.path a GLUE folder."
        ) from None
    hub_split = {
        "train": "train",
        "dev": "validation",
        "dev_matched": "validation_matched",
        "dev_mismatched": "validation_mismatched",
    }
    rows: dict[str, int] = {}
    for split in task.splits:
        frame = dataset[hub_split[split]].to_pandas()
        limit = params.data.max_train_rows if split == "train" else params.data.max_dev_rows
        if limit is not None:
            frame = frame.head(limit)
        write_split(task, frame, target / f"{split}.tsv")
        rows[split] = len(frame)
    return rows, str(revision)


def run(params: Params, paths: Paths) -> dict[str, Any]:
    task = get_task(params.task)
    folder = None if params.data.source == "hub" else source_dir(params, paths, task)  # fail before any delete
    target = paths.raw_dir
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with stage_run("ingest", params, paths) as tracked:
        if params.data.source == "hub":
            rows, revision = from_hub(task, target, params)
            origin = f"hub:nyu-mll/glue/{task.name}@{revision}"
        else:
            assert folder is not None
            rows = {}
            for split in task.splits:
                source = folder / f"{split}.tsv"
                limit = params.data.max_train_rows if split == "train" else params.data.max_dev_rows
                rows[split] = copy_rows(source, target / f"{split}.tsv", task, limit)
            origin = str(folder)
        content = {
            "task": task.name,
            "files": {
                split: hashlib.sha256((target / f"{split}.tsv").read_bytes()).hexdigest() for split in task.splits
            },
            "rows": rows,
        }
        write_json(target / "manifest.json", content)
        manifest = {**content, "source": params.data.source, "origin": origin}
        write_json(paths.ingest_report_dir / "manifest.json", manifest)
        write_lineage(paths, "ingest", tracked.run_id)
        tracked.set_tag(DATA_TAG, dvc_directory_md5(target))  # what DVC is about to record in dvc.lock
        metrics = {f"rows_{split}": count for split, count in rows.items()}
        tracked.log_metrics(metrics)
        tracked.log_dict(manifest, "manifest.json")
    return {"metrics": metrics, "manifest": manifest}
