# Sourced by scripts/run-hub, scripts/run-cloud and scripts/install-test-deps: make .venv and install the
# project's extras into it, skipping pip when pyproject.toml has not changed since the last install and the
# extras asked for are among those installed (so `scripts/test` then `scripts/run-hub` does not run pip twice).
ensure_venv() {
  local extras="$1" repo stamp hash have_extras="" have_hash="" want_extras e missing=0
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ ! -x "$repo/.venv/bin/python" ]; then
    echo "[setup] creating $repo/.venv"
    python3 -m venv "$repo/.venv" || { echo "error: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2; return 2; }
  fi
  stamp="$repo/.venv/.pingwatch-installed"
  hash=$(sha256sum "$repo/pyproject.toml" | cut -c1-16)
  if [ -f "$stamp" ]; then read -r have_extras have_hash < "$stamp" || true; fi
  if [ "$have_hash" = "$hash" ]; then
    for e in ${extras//,/ }; do
      case ",$have_extras," in *",$e,"*) ;; *) missing=1 ;; esac
    done
    [ "$missing" = 0 ] && return 0
  fi
  # Keep what is installed (the next script may need it), also when pyproject.toml changed.
  want_extras="${have_extras:+$have_extras,}$extras"
  want_extras=$(printf '%s' "$want_extras" | tr ',' '\n' | sort -u | paste -sd, -)
  echo "[setup] installing Python packages ($want_extras) into .venv"
  "$repo/.venv/bin/python" -m pip install --quiet --upgrade pip
  "$repo/.venv/bin/python" -m pip install --quiet -e "$repo[$want_extras]" || { echo "error: pip install failed (see above)" >&2; return 1; }
  echo "$want_extras $hash" > "$stamp"
}
