"""ingest copies the chosen source byte for byte, cuts whole lines, and fails clearly on a bad source."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from distilflow.config.loading import parse_params
from distilflow.paths import Paths
from distilflow.stages import ingest
from tests.conftest import REPO_ROOT


@pytest.fixture
def project(tmp_path: Path, mlflow_store: str) -> Paths:
    shutil.copytree(REPO_ROOT / "data" / "demo", tmp_path / "data" / "demo")
    # A stage logs its dvc.yaml params (tracking.runs.stage_run), so the project has the pipeline's dvc.yaml.
    shutil.copy(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return Paths.at(tmp_path)


def test_demo_source_is_copied_verbatim_with_a_manifest(project: Paths) -> None:
    outputs = ingest.run(parse_params({}), project)
    for split in ("train", "dev"):
        source = project.demo_dir / "sst2" / f"{split}.tsv"
        assert (project.raw_dir / f"{split}.tsv").read_bytes() == source.read_bytes()
        manifest = json.loads((project.raw_dir / "manifest.json").read_text())
        assert manifest["files"][split] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert outputs["metrics"]["rows_train"] == 1200
    assert outputs["metrics"]["rows_dev"] == 300
    assert "ingest" in json.loads(project.lineage_file("ingest").read_text())
    assert sorted(path.name for path in project.raw_dir.iterdir()) == ["dev.tsv", "manifest.json", "train.tsv"]


def test_the_data_version_is_the_content_not_the_path_or_the_run(project: Paths, tmp_path: Path) -> None:
    """Two clones at different paths, or two runs, of byte-identical files are one data version."""
    from distilflow.tracking.runs import dvc_directory_md5

    versions = []
    for copy in ("clone-a", "elsewhere/clone-b"):
        folder = tmp_path / copy / "SST-2"
        shutil.copytree(project.demo_dir / "sst2", folder)
        ingest.run(parse_params({"data": {"source": "local", "path": str(folder)}}), project)
        versions.append(dvc_directory_md5(project.raw_dir))
        assert json.loads((project.ingest_report_dir / "manifest.json").read_text())["origin"] == str(folder)
    assert versions[0] == versions[1]
    (tmp_path / "elsewhere" / "clone-b" / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nother .\t1\n")
    ingest.run(parse_params({"data": {"source": "local", "path": str(tmp_path / "elsewhere/clone-b/SST-2")}}), project)
    assert dvc_directory_md5(project.raw_dir) != versions[0]


def test_max_rows_keeps_the_header_and_whole_lines(project: Paths) -> None:
    ingest.run(parse_params({"data": {"max_train_rows": 10, "max_dev_rows": 5}}), project)
    lines = (project.raw_dir / "train.tsv").read_text().splitlines()
    assert lines[0] == "sentence\tlabel"
    assert len(lines) == 11
    assert lines[1:] == (project.demo_dir / "sst2" / "train.tsv").read_text().splitlines()[1:11]
    assert len((project.raw_dir / "dev.tsv").read_text().splitlines()) == 6


def test_local_folder_for_a_headerless_task(project: Paths, tmp_path: Path) -> None:
    folder = tmp_path / "CoLA"
    folder.mkdir()
    rows = "".join(f"src\t{i % 2}\t\tsentence number {i} .\n" for i in range(8))
    (folder / "train.tsv").write_text(rows)
    (folder / "dev.tsv").write_text(rows)
    params = parse_params({"task": "cola", "data": {"source": "local", "path": str(folder), "max_train_rows": 3}})
    outputs = ingest.run(params, project)
    assert outputs["metrics"]["rows_train"] == 3  # no header line to keep for CoLA
    assert outputs["metrics"]["rows_dev"] == 8


def test_missing_split_and_missing_folder_fail_with_the_path(project: Paths, tmp_path: Path) -> None:
    folder = tmp_path / "SST-2"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tlabel\nfine .\t1\n")
    with pytest.raises(ingest.IngestError, match=r"lacks dev\.tsv"):
        ingest.run(parse_params({"data": {"source": "local", "path": str(folder)}}), project)
    with pytest.raises(ingest.IngestError, match="is not a folder"):
        ingest.run(parse_params({"data": {"source": "local", "path": str(tmp_path / "nope")}}), project)
    with pytest.raises(ingest.IngestError, match=r"lacks train\.tsv, dev\.tsv.*demos shipped in .*sst2"):
        ingest.run(parse_params({"task": "rte", "data": {"path": "data/demo/sst2/.."}}), project)
    # Nothing the user had is lost to a bad source: the last good data/raw is still there.
    ingest.run(parse_params({}), project)
    before = (project.raw_dir / "train.tsv").read_bytes()
    with pytest.raises(ingest.IngestError):
        ingest.run(parse_params({"data": {"path": str(tmp_path / "nope")}}), project)
    assert (project.raw_dir / "train.tsv").read_bytes() == before


def test_hub_source_fails_fast_offline(project: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ingest.IngestError, match=r"(?i)without a network"):
        ingest.run(parse_params({"data": {"source": "hub"}}), project)
