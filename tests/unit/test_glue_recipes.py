"""Per-task recipes (flows/profiles/glue/TASK.yaml): one per GLUE task, only params.yaml keys, a source per value."""

from __future__ import annotations

import re

import pytest
import yaml

from distilflow.config.loading import load_params, parse_params
from distilflow.config.params import Params, flatten
from distilflow.orchestration.scratch_workspace import deep_update
from distilflow.paths import Paths
from distilflow.tasks import TASKS
from tests.conftest import REPO_ROOT, SMOKE_PROFILE

RECIPES = Paths.at(REPO_ROOT).glue_recipes_dir
VALUE_LINE = re.compile(r"^\s*[A-Za-z_][\w]*:\s*(?P<value>[^#\s][^#]*?)?\s*(?:#\s*(?P<source>.*))?$")


def test_every_task_has_a_recipe_and_nothing_else_does() -> None:
    assert {file.stem for file in RECIPES.glob("*.yaml")} == set(TASKS)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_recipe_changes_only_params_keys_and_cites_a_source_for_each_value(task: str) -> None:
    text = (RECIPES / f"{task}.yaml").read_text(encoding="utf-8")
    documented = set(flatten(load_params(REPO_ROOT / "params.yaml").model_dump(by_alias=True)))
    recipe = yaml.safe_load(text)
    assert set(flatten(recipe)) <= documented
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = VALUE_LINE.match(line)
        assert found, line
        if found["value"] is not None:  # a value, not a section heading
            assert found["source"] and len(found["source"]) > 5, f"{task}: no source for {line.strip()!r}"
    # The recipe, and the recipe with the smoke profile over it, are valid settings.
    base = load_params(REPO_ROOT / "params.yaml").model_dump(by_alias=True)
    assert isinstance(parse_params(deep_update(base, {"task": task, **recipe})), Params)
    assert isinstance(parse_params(deep_update(deep_update(base, recipe), SMOKE_PROFILE)), Params)
