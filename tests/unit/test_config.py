"""params.yaml is parsed into typed models; mistakes fail with the key and the file named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distilflow.config.loading import ParamsError, load_params, parse_params
from distilflow.config.params import Params
from tests.conftest import REPO_ROOT, run


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_project_params_load_with_the_documented_defaults() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.task == "sst2"
    assert params.model.teacher == "packaged-minilm"
    assert params.distill.student.hidden_size == 128
    assert params.distill.student.num_layers == 2


def test_the_typed_defaults_are_params_yaml() -> None:
    """One source of defaults: code that builds Params from a partial dict gets what the pipeline runs with."""
    assert Params().model_dump(by_alias=True) == load_params(REPO_ROOT / "params.yaml").model_dump(by_alias=True)


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "task: sst2\ndistill:\n  temprature: 3.0\n")
    with pytest.raises(ParamsError) as error:
        load_params(path)
    message = str(error.value)
    assert "distill.temprature" in message
    assert "unknown key" in message
    assert str(path) in message


def test_ill_typed_value_names_the_key_and_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "finetune:\n  batch_size: many\n")
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert "finetune.batch_size" in str(error.value)
    assert "'many'" in str(error.value)


@pytest.mark.parametrize(
    ("old", "value", "new"),
    [
        ("device", "cpu", "run.device"),
        ("precision", "fp32", "run.precision"),
        ("eval_batch_size", 64, "run.eval_batch_size"),
    ],
)
def test_a_key_that_moved_to_run_says_where_it_lives_now(tmp_path: Path, old: str, value: str, new: str) -> None:
    path = write(tmp_path, f"task: sst2\nfinetune:\n  {old}: {value}\n  epochs: 1\n")
    with pytest.raises(ParamsError) as error:
        load_params(path)
    message = str(error.value)
    assert f"finetune.{old} moved to {new} (docs/finetune.md#devices)" in message
    assert str(path) in message
    assert "### Devices" in (REPO_ROOT / "docs" / "finetune.md").read_text()  # the section the message points to
    section, key = new.split(".")
    moved = load_params(write(tmp_path, f"task: sst2\n{section}:\n  {key}: {value}\nfinetune:\n  epochs: 1\n"))
    assert getattr(moved.run, key) == value


def test_run_wide_settings_are_read_by_every_stage_that_computes_with_a_model() -> None:
    """run.device (and run.precision where a stage trains) is tracked by DVC for each stage that reads it."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    declared = {name: stage.get("do", stage).get("params", []) for name, stage in stages.items()}
    for name in ("finetune", "pretrain", "distill"):
        assert {"run.device", "run.precision"} <= set(declared[name]), name
    assert "run.device" in declared["evaluate"]
    assert not [
        key
        for keys in declared.values()
        for key in keys
        if str(key).startswith(("finetune.device", "finetune.precision"))
    ]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"task": "sst3"}, "task"),
        ({"data": {"source": "demo"}}, "data.source"),
        ({"data": {"path": ""}}, "data.path"),
        ({"distill": {"alpha": 1.5}}, "distill.alpha"),
        ({"distill": {"student": {"init": "magic"}}}, "distill.student.init"),
        ({"unknown_section": {}}, "unknown_section"),
    ],
)
def test_invalid_settings_are_rejected(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        parse_params(raw)


def test_not_a_mapping_and_missing_file_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="mapping"):
        load_params(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "absent.yaml")


def test_cli_exits_2_with_the_message_on_a_bad_key(tmp_path: Path) -> None:
    write(tmp_path, "task: sst2\nfinetune:\n  lr: 0.1\n")
    process = run(["distilflow", "stage", "finetune", "--root", str(tmp_path)], tmp_path, check=False)
    assert process.returncode == 2
    assert "finetune.lr: unknown key" in process.stderr


def test_every_dvc_params_key_exists_in_the_typed_config() -> None:
    """dvc.yaml and the typed config (config/) must agree, or DVC would track a key the code never reads."""
    params = load_params(REPO_ROOT / "params.yaml").model_dump(by_alias=True)
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for key in body.get("params", []):
            node: object = params
            for part in str(key).split("."):
                assert isinstance(node, dict) and part in node, f"stage {name}: params key {key} not in config"
                node = node[part]
