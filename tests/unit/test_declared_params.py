"""A stage reads only the settings its dvc.yaml ``params:`` declare (config.declared); the pipeline's own stages run
through this view in every integration test, since ``distilflow stage NAME`` hands it to them."""

from __future__ import annotations

import pytest

from distilflow.config.declared import UndeclaredParam, declared, whole
from distilflow.config.params import Params
from distilflow.config.training_params import RunParams


def test_a_declared_section_comes_back_whole_and_typed() -> None:
    params = Params()
    view = declared(params, ("task", "finetune"), "finetune")
    assert view.task == params.task
    assert view.finetune is params.finetune
    assert view.finetune.model_dump() == params.finetune.model_dump()


def test_a_dotted_key_opens_only_that_key_of_its_section() -> None:
    view = declared(Params(), ("run.device", "run.eval_batch_size"), "evaluate")
    assert view.run.device == "auto" and view.run.eval_batch_size == RunParams().eval_batch_size
    with pytest.raises(UndeclaredParam, match=r"reads run\.precision.*add `- run\.precision` under stage evaluate"):
        _ = view.run.precision
    with pytest.raises(UndeclaredParam, match=r"reads run\.model_dump"):
        view.run.model_dump()  # the section as a whole is more than the stage declared


def test_an_undeclared_section_names_the_stage_and_the_key() -> None:
    view = declared(Params(), ("task",), "tokenize")
    with pytest.raises(UndeclaredParam, match=r"stage tokenize reads distill, which its dvc\.yaml params: do not"):
        _ = view.distill
    with pytest.raises(UndeclaredParam, match=r"reads params\.model_dump"):
        view.model_dump()


def test_keys_follow_params_yaml_names_not_python_aliases() -> None:
    params = Params()
    view = declared(params, ("register", "validate.min_chars"), "register")
    assert view.register_ is params.register_
    assert view.validate_.min_chars == params.validate_.min_chars
    with pytest.raises(UndeclaredParam, match=r"validate\.max_chars"):
        _ = view.validate_.max_chars


def test_bookkeeping_reaches_the_whole_settings() -> None:
    params = Params()
    view = declared(params, ("task",), "ingest")
    assert whole(view) is params and whole(params) is params
    assert "register" not in repr(view) and "ingest" in repr(view)
