#!/usr/bin/env bash
# Development helper: regenerate 0001_initial from launchkit/models.py while no release exists.
# Run it after any change to models.py; tests check the migration matches the models.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
rm -f launchkit/migrations/versions/0001_initial.py
$PY - "$tmp" <<'PYEOF'
import sys
from alembic import command
from launchkit.db import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/gen.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001_initial")
PYEOF
.venv/bin/ruff format -q launchkit/migrations/versions/
.venv/bin/ruff check -q --fix launchkit/migrations/versions/ || true
rm -rf "$tmp"
echo "regenerated launchkit/migrations/versions/0001_initial.py"
