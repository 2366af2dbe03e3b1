"""docs/schema.graphql is the GraphQL schema the code builds.

python scripts/graphql_schema.py --write   regenerate it (commit the result)
python scripts/graphql_schema.py --check   fail if it differs (scripts/test.sh, CI)
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "schema.graphql"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from novacron.api.graphql.schema import schema

    text = schema.as_str() + "\n"
    if args.write:
        TARGET.write_text(text)
        return 0
    current = TARGET.read_text() if TARGET.exists() else ""
    if current == text:
        return 0
    diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "committed", "new", lineterm="")
    print("\n".join(list(diff)[:80]), file=sys.stderr)
    print("docs/schema.graphql is out of date: python scripts/graphql_schema.py --write", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
