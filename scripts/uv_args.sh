# Sourced by setup_venv.sh and check_install.sh: fills the array uv_args with the wheel folders and package
# indexes configured for pip on this machine (uv ignores pip's configuration). Needs $PYTHON.
uv_args=(--index-strategy unsafe-best-match)
# e.g.  global.find-links='/opt/wheels'   global.extra-index-url='file:///a file:///b'
while IFS= read -r line; do
  key=${line%%=*}; value=${line#*=}; value=${value//\'/}
  for v in $value; do
    case "$key" in
      *find-links) uv_args+=(--find-links "$v") ;;
      *extra-index-url) uv_args+=(--extra-index-url "$v") ;;
      *index-url) uv_args+=(--index-url "$v") ;;
    esac
  done
done < <("$PYTHON" -m pip config list 2>/dev/null | sort -u)
