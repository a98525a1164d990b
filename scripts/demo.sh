#!/usr/bin/env bash
# Runs the demo: a simulated Supervisor, the add-on and two folder locations,
# with the web interface on http://127.0.0.1:8099. Arguments go to `backup_addon demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m backup_addon demo "$@"
