"""Fail when a module passes 600 lines or a function 80 (generated code aside): small units stay readable.

    python scripts/check_sizes.py [src/novacron]

Prints every offender with its size; exit code 1 if there is one. Run by scripts/test.sh.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# generated code (migrations, the SDK's operations: scripts/sdk_gen.py) is read through its generator
EXEMPT = ("db/migrations/versions/", "sdk/generated/")


def offenders(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if any(part in path.as_posix() for part in EXEMPT):
            continue
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{path}: module of {lines} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    where = f"{path}:{node.lineno}: function {node.name}"
                    found.append(f"{where} of {size} lines (limit {MAX_FUNCTION_LINES})")
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src/novacron")
    found = offenders(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
