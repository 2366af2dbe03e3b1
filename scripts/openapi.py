"""The committed OpenAPI document (docs/openapi.json): write it, or check it is up to date.

    python scripts/openapi.py --write    regenerate docs/openapi.json from the code
    python scripts/openapi.py --check    exit 1 when the committed file differs (CI's lint stage)

Either way the document is validated against OpenAPI 3.1 first. The app is built on a throwaway
state directory and nothing is started: the document depends on the code only.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "openapi.json"


def generate() -> dict[str, Any]:
    """The document of the app as the code builds it."""
    from novacron.api.app import create_app
    from novacron.config import Settings
    from novacron.context import Context
    from novacron.db.base import Database
    from novacron.identity.tokens import TokenService

    with tempfile.TemporaryDirectory(prefix="nc-openapi-") as state:
        settings = Settings(
            state_dir=Path(state), database_url=f"sqlite:///{state}/nc.db", embedded_agent=False
        )
        db = Database(settings.database_url)
        try:
            ctx = Context(settings=settings, db=db, tokens=TokenService(db, settings))
            return create_app(ctx, background=False).openapi()
        finally:
            db.engine.dispose()


def render(doc: dict[str, Any]) -> str:
    """Deterministic text: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate docs/openapi.json")
    mode.add_argument("--check", action="store_true", help="fail when docs/openapi.json is stale")
    args = parser.parse_args()

    from openapi_spec_validator import validate

    doc = generate()
    validate(doc)
    text = render(doc)
    if args.write:
        TARGET.write_text(text)
        print(f"wrote {TARGET.relative_to(ROOT)} ({len(doc['paths'])} paths)")
        return 0
    committed = TARGET.read_text() if TARGET.exists() else ""
    if committed == text:
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return 0
    diff = difflib.unified_diff(
        committed.splitlines(), text.splitlines(), "docs/openapi.json (committed)", "generated", lineterm=""
    )
    print("\n".join(list(diff)[:80]), file=sys.stderr)
    print(
        "docs/openapi.json is not what the code generates: the API changed. Regenerate it with\n"
        "    python scripts/openapi.py --write\nreview the diff and commit it.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
