#!/usr/bin/env bash
# Checks the demo apps' shared logic: fixture, syntax of all Kotlin/Swift sources, and (when the
# compilers exist) the Kotlin and Swift cores against tests/demos/fixture.json.
#   scripts/check_demos.sh [pytest args]  # run the checks
#   scripts/check_demos.sh --install  # first apt-get install kotlin (Debian, as root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

if [[ "${1:-}" == "--install" ]]; then
  shift
  command -v kotlinc >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kotlin; }
fi
command -v kotlinc >/dev/null || echo "note: kotlinc missing, Kotlin compile check will be skipped"
command -v swift >/dev/null || echo "note: swift missing, Swift compile check will be skipped"
exec "$PY" -m pytest -q -rs tests/demos "$@"
