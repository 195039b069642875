#!/usr/bin/env bash
# Create <repo>/.venv (unless it exists) with the Python test requirements:
#   bash tests/python/setup_venv.sh && .venv/bin/python -m pytest tests/python
# VENV=/path and PYTHON=python3.x override the location and the interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup_venv: creating $venv" >&2
    if ! "$python" -m venv "$venv"; then
        echo "setup_venv: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

# Skip pip when every pinned version is already installed (fast, works offline).
if "$venv/bin/python" - "$requirements" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, wanted = line.split("==")
    try:
        if version(name) != wanted:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
    echo "setup_venv: $venv is up to date" >&2
else
    echo "setup_venv: installing $(grep -v '^#' "$requirements" | xargs)" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
fi
