#!/usr/bin/env bash
# `pip install .` as a user would: a fresh virtual environment, the package with its declared dependencies (held
# to the pinned versions of requirements.txt as constraints), then, from outside the repository so that only the
# installed copy can be imported, `domaingap measure` on a registered dataset. Needs $DOMAINGAP_DATA (or internet).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PYTHON=${PYTHON:-python3}
start=$(date +%s)
if command -v uv >/dev/null 2>&1; then
  source scripts/uv_args.sh  # uv_args: pip's wheel folders and indexes, for uv
  uv venv --quiet --python "$PYTHON" "$WORK/venv"
  VIRTUAL_ENV="$WORK/venv" uv pip install --quiet "${uv_args[@]}" -c requirements.txt "$REPO"
else
  "$PYTHON" -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet -c requirements.txt "$REPO"
fi
cd "$WORK"
export XDG_CACHE_HOME="$WORK/cache"  # an installed package's default data/artefact folders: kept inside $WORK
unset DOMAINGAP_ARTEFACTS DOMAINGAP_CACHE  # a fresh user's defaults (only the data folder, the mirror, is kept)
"$WORK/venv/bin/python" -c "import domaingap, domaingap.kernels, domaingap.measure; print('imported', domaingap.__file__)"
case "$("$WORK/venv/bin/python" -c 'import domaingap; print(domaingap.__file__)')" in
  "$REPO"/*) echo "FAIL: the installed package resolves to the checkout, not the install"; exit 1 ;;
esac
"$WORK/venv/bin/python" - <<'PY'
from domaingap import paths
assert not paths.IN_CHECKOUT, paths.REPO_ROOT
assert "site-packages" not in str(paths.artefacts_dir()) and "lib/python" not in str(paths.cache_dir()), \
    (paths.artefacts_dir(), paths.cache_dir())
print("installed package: artefacts in", paths.artefacts_dir().relative_to(paths._home().parent.parent))
PY
"$WORK/venv/bin/domaingap" measure breastmnist --size 28 --gray --references none --bootstrap 50 --device cpu \
  --out "$WORK/report" > "$WORK/measure.log"
test -s "$WORK/report/report.md" && test -s "$WORK/report/measurement.json"
echo "pip install . and domaingap measure: OK ($(( $(date +%s) - start )) s)"
