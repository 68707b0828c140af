"""Issue #32's limits, kept: no module in src/ over 400 lines, no function over 60 (a screen you can read)."""

from __future__ import annotations

import ast

from tests.conftest import REPO_ROOT

MODULE_LINES, FUNCTION_LINES = 400, 60


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    long_modules, long_functions = [], []
    for file in sorted((REPO_ROOT / "src" / "distilflow").rglob("*.py")):
        text = file.read_text(encoding="utf-8")
        name = str(file.relative_to(REPO_ROOT))
        if len(text.splitlines()) > MODULE_LINES:
            long_modules.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    long_functions.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert long_modules == [], f"split these modules by what they do: {long_modules}"
    assert long_functions == [], f"split these functions: {long_functions}"
