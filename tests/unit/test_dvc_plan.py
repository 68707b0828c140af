"""How the flow's plan words DVC's status: one readable line per stage, however much DVC lists."""

from __future__ import annotations

from distilflow.orchestration.dvc_plan import MAX_DETAILS, describe_change


def test_a_params_change_names_the_key_and_what_happened() -> None:
    entry = {"changed deps": {"params.yaml": {"distill.temperature": "modified"}}}
    assert describe_change(entry) == "changed deps: params.yaml (distill.temperature: modified)"


def test_a_long_list_names_the_first_few_and_counts_the_rest() -> None:
    files = {f"src/distilflow/module_{index}.py": "modified" for index in range(MAX_DETAILS + 7)}
    line = describe_change({"changed deps": files, "changed outs": {"models/student": "deleted"}})
    assert line == (
        "changed deps: src/distilflow/module_0.py: modified, src/distilflow/module_1.py: modified, "
        "src/distilflow/module_2.py: modified, src/distilflow/module_3.py: modified, and 7 more; "
        "changed outs: models/student: deleted"
    )
    assert describe_change("always changed") == "always changed"
