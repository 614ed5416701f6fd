# Shared by scripts/demo and scripts/test: create .venv if missing and install the project.
# Usage: source scripts/_bootstrap.sh [extra]   (extra: "test" installs the test extra too)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "agora: creating virtual environment in .venv" >&2
    "$PY" -m venv .venv
fi
VENV_PY="$ROOT/.venv/bin/python"
"$VENV_PY" -c 'import sys; assert sys.version_info >= (3, 11), "agora needs Python >= 3.11"'
spec="."
if [ "${1:-}" = "test" ]; then spec=".[test]"; fi
# Reinstall only when the project metadata changed since the last install.
stamp=".venv/.agora-install-$(cksum pyproject.toml | cut -d' ' -f1)-${1:-run}"
if [ ! -f "$stamp" ]; then
    echo "agora: installing $spec into .venv" >&2
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
