"""The house's size rule: no function over a screenful twice, no module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import featuregen_assets

PACKAGE = Path(featuregen_assets.__file__).parent
MAX_FUNCTION_LINES = 120
MAX_MODULE_LINES = 500


def test_no_function_over_120_lines_and_no_module_over_500() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(PACKAGE.parent)
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, "split where it reads better:\n" + "\n".join(too_long)
