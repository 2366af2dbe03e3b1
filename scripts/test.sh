#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run the whole check: ruff, mypy, the import layers,
# module and function sizes, the committed OpenAPI document and the SDK generated from it, and the pytest suite
# (unit, integration with real QEMU / PostgreSQL / networking, e2e in headless Chromium).
#
#   bash scripts/test.sh                  everything, as CI does (.ci/run calls exactly this)
#   bash scripts/test.sh tests/unit -x    extra arguments go to pytest (lint still runs)
#
# Environment: NOVACRON_SKIP_LINT=1 skips ruff and mypy; NOVACRON_TEST_TIMEOUT (seconds, default
# 4800) bounds the pytest run as a whole. Per-test timings go to build/junit.xml
# (NOVACRON_JUNIT overrides the path); `python scripts/suite_times.py` sums them per file. The exit code is non-zero if any stage failed, and pytest
# collecting no test at all counts as a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '[test] %s\n' "$*" >&2; }
SECONDS=0

bash scripts/setup.sh
setup_s=$SECONDS

export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export NOVACRON_GUEST_DIR="$ROOT/guest/out"
# keep chatty tools from phoning home on a machine that reaches nothing but the package registries
export PIP_DISABLE_PIP_VERSION_CHECK=1 HYPOTHESIS_NO_TELEMETRY=1 SCHEMATHESIS_TELEMETRY=false

failed=()

if [ "${NOVACRON_SKIP_LINT:-0}" != "1" ]; then
    lint_dirs=()
    for d in src tests bench; do [ -d "$d" ] && lint_dirs+=("$d"); done
    say "ruff check ${lint_dirs[*]}"
    ruff check "${lint_dirs[@]}" || failed+=("ruff")
    say "mypy"
    mypy || failed+=("mypy")
    say "lint-imports (the layers of docs/architecture.md)"
    lint-imports --no-cache || failed+=("lint-imports")
    say "module and function sizes"
    python scripts/check_sizes.py src/novacron || failed+=("sizes")
    say "docs/openapi.json is what the code generates (python scripts/openapi.py --write)"
    python scripts/openapi.py --check || failed+=("openapi")
    say "docs/schema.graphql is what the code generates (python scripts/graphql_schema.py --write)"
    python scripts/graphql_schema.py --check || failed+=("graphql-schema")
    say "the SDK's generated operations are what docs/openapi.json gives (python scripts/sdk_gen.py --write)"
    python scripts/sdk_gen.py --check || failed+=("sdk")
fi

timeout_s="${NOVACRON_TEST_TIMEOUT:-4800}"
say "pytest (limit ${timeout_s}s)"
junit="${NOVACRON_JUNIT:-$ROOT/build/junit.xml}"
mkdir -p "$(dirname "$junit")"
pytest_args=(-p no:cacheprovider -q -rfEs -o faulthandler_timeout=600 --durations=20 --junitxml="$junit")
if [ "$#" -gt 0 ]; then
    pytest_args+=("$@")
else
    pytest_args+=(tests)
fi
set +e
# SIGINT first, so pytest still prints its summary line for what ran; SIGKILL 60 s later.
timeout --signal=INT --kill-after=60 "$timeout_s" python -m pytest "${pytest_args[@]}" </dev/null
rc=$?
set -e
case "$rc" in
    0) ;;
    5) say "pytest collected no tests: that is a failure"; failed+=("pytest(no tests)") ;;
    124|137) say "pytest exceeded ${timeout_s}s and was stopped"; failed+=("pytest(timeout)") ;;
    *) failed+=("pytest(exit $rc)") ;;
esac

if [ -s "$junit" ]; then
    python scripts/suite_times.py "$junit" --top 20 >&2 || true
fi
say "setup ${setup_s}s, total ${SECONDS}s"
if [ "${#failed[@]}" -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all checks passed"
