#!/usr/bin/env bash
# Create the project's virtual environment and install the pinned requirements plus the package (editable).
# Uses uv when it can (minutes instead of ~15 min with pip), else pip. Local wheel folders and package indexes
# configured for pip on this machine are handed to uv too, because uv ignores pip's configuration.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv >/dev/null 2>&1 || true
fi

if command -v uv >/dev/null 2>&1; then
  source scripts/uv_args.sh  # uv_args: pip's wheel folders and indexes, for uv
  [ -x "$VENV/bin/python" ] || uv venv --quiet --seed --python "$PYTHON" "$VENV"
  VIRTUAL_ENV="$VENV" uv pip install --quiet "${uv_args[@]}" -r requirements.txt
  VIRTUAL_ENV="$VENV" uv pip install --quiet --no-deps -e .
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet -r requirements.txt
  "$VENV/bin/pip" install --quiet --no-deps -e .
fi
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (domaingap)" >/dev/null
echo "virtual environment ready: $VENV"
