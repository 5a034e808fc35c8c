# Sourced by scripts/run-hub and scripts/install-test-deps: make .venv and install the project's extras into it,
# skipping pip when pyproject.toml has not changed since the last install.
ensure_venv() {
  local extras="$1" repo stamp want
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ ! -x "$repo/.venv/bin/python" ]; then
    echo "[setup] creating $repo/.venv"
    python3 -m venv "$repo/.venv" || { echo "error: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2; return 2; }
  fi
  stamp="$repo/.venv/.pingwatch-installed"
  want="$extras $(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing Python packages ($extras) into .venv"
    "$repo/.venv/bin/python" -m pip install --quiet --upgrade pip
    "$repo/.venv/bin/python" -m pip install --quiet -e "$repo[$extras]" || { echo "error: pip install failed (see above)" >&2; return 1; }
    echo "$want" > "$stamp"
  fi
}
