"""dvc.yaml is the truth about what each stage runs: its code deps are its import closure, by package.

If a stage imports a module that its ``deps`` miss, editing that module would leave the stage falsely "up to
date"; if ``deps`` list a module it never runs, an unrelated edit reruns it. Both fail here, with the fix named.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scripts.dvc_deps import code_deps as expected_code_deps
from scripts.dvc_deps import stage_code

from distilflow.paths import Paths
from distilflow.runtime.dvc_files import lineage_order, stage_names, stages
from tests.conftest import REPO_ROOT

# Source loaded by path, not imported: evaluate.load() reads the shipped GLUE metric script.
LOADED_BY_PATH = {"src/distilflow/metrics/glue/glue.py"}


def covered_by(dep: str, file: str) -> bool:
    return file == dep or file.startswith(dep.rstrip("/") + "/")


@pytest.mark.parametrize("stage", stage_names(REPO_ROOT))
def test_code_deps_are_exactly_the_import_closure(stage: str) -> None:
    spec = next(spec for spec in stages(REPO_ROOT) if spec.name == stage)
    code_deps = [dep for dep in spec.deps if dep.startswith("src/")]
    runs = stage_code(stage)
    missing = sorted(file for file in runs if not any(covered_by(dep, file) for dep in code_deps))
    assert not missing, (
        f"dvc.yaml stage {stage} runs these files but does not list them in deps: {missing} "
        "(make deps rewrites the code deps)"
    )
    for dep in code_deps:
        files = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / dep).rglob("*.py")} or {dep}
        assert files & runs, f"dvc.yaml stage {stage} lists {dep}, but the stage imports nothing from it"
    assert code_deps == expected_code_deps(stage), (
        f"dvc.yaml stage {stage}: a stage depends on its own module, the shared leaves it imports and the folders "
        "of the packages it imports (make deps rewrites the code deps)"
    )


def test_every_stage_is_a_leaf() -> None:
    """A stage imports library modules only: shared code lives where every stage's deps can name it."""
    for stage in stage_names(REPO_ROOT):
        others = sorted(
            file for file in stage_code(stage) if "/stages/" in file and not file.endswith(f"/stages/{stage}.py")
        )
        assert not others, f"stage {stage} imports other stages: {others}"
    library = [p for p in (REPO_ROOT / "src" / "distilflow").rglob("*.py") if "stages" not in p.parts]
    for file in library:
        assert not re.search(r"^\s*(from|import) distilflow\.stages", file.read_text(), re.M), (
            f"{file.relative_to(REPO_ROOT)} imports a stage: move what it needs into a library module"
        )


def test_user_data_is_a_dependency_of_ingest() -> None:
    ingest = next(spec for spec in stages(REPO_ROOT) if spec.name == "ingest")
    assert "${data.path}" in ingest.deps


def _path_values() -> dict[str, str]:
    """Every path Paths defines, relative to the project root (``metrics_file`` by its folder)."""
    paths = Paths.at(REPO_ROOT)
    found = {}
    for name in dir(Paths):
        if isinstance(getattr(Paths, name), property):
            value = getattr(paths, name)
            if isinstance(value, Path) and value.is_relative_to(paths.root) and value != paths.root:
                found[name] = str(value.relative_to(paths.root))
    return found


def test_every_out_is_a_path_that_paths_gives() -> None:
    values = set(_path_values().values())
    folders = {value for value in values if "." not in Path(value).name}
    for spec in stages(REPO_ROOT):
        for out in spec.outs:
            for key in spec.foreach or ("",):
                path = out.replace("${key}", key)
                assert path in values or any(covered_by(folder, path) for folder in folders), (
                    f"stage {spec.name}: out {path} is neither a Paths property nor inside one of its folders"
                )


def test_paths_are_not_written_as_literals_elsewhere() -> None:
    """A path paths.py defines is spelt there only; src/ and flows/ ask Paths for it."""
    sources = [*(REPO_ROOT / "src" / "distilflow").rglob("*.py"), *(REPO_ROOT / "flows").rglob("*.py")]
    for name, value in _path_values().items():
        parts = Path(value).parts
        if len(parts) < 2:
            continue  # one-word folders (metrics, plots) are ordinary words in prose and keys
        joined = r"\s*/\s*".join(f'"{re.escape(part)}"' for part in parts)
        pattern = re.compile(rf'"{re.escape(value)}"|{joined}')
        for file in sources:
            if file.name == "paths.py":
                continue
            hit = pattern.search(file.read_text(encoding="utf-8"))
            assert hit is None, f"{file.relative_to(REPO_ROOT)} spells Paths.{name} ({value}) as {hit.group(0)!r}"


def test_stage_names_appear_only_in_dvc_yaml() -> None:
    """The CLI, the flow and the lineage order derive the stage list from dvc.yaml instead of copying it."""
    names = stage_names(REPO_ROOT)
    sources = [*(REPO_ROOT / "src" / "distilflow").rglob("*.py"), *(REPO_ROOT / "flows").rglob("*.py")]
    listing = re.compile(r"[\(\[\{]\s*" + r"\s*,\s*".join(f'"{n}"' for n in names[:3]))
    for file in sources:
        assert not listing.search(file.read_text(encoding="utf-8")), f"{file} writes out the stage list"
    assert lineage_order(REPO_ROOT)[0] == names[0]
    assert "evaluate_teacher" in lineage_order(REPO_ROOT)
