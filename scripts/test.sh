#!/usr/bin/env bash
# Runs the whole test suite. Installs what it needs first (see scripts/setup.sh).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k folder`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
