#!/usr/bin/env bash
# Prints the interpreter `make venv` builds the virtual environment with.
#
# The distribution's python3 comes first ($ZEROTOUCH_SYSTEM_PYTHON, default /usr/bin/python3):
# Debian builds CPython with profile-guided optimisation and LTO (its python3.11 changelog),
# where a version manager's default build (pyenv without --enable-optimizations) has neither,
# and the whole enrollment path is Python-bound: docs/benchmarks.md, "The interpreter's
# build", has the figures. Then python3 on PATH. A candidate is taken when it is 3.11 or newer
# and can make a venv with pip (Debian's needs python3-venv). `make PYTHON=...` overrides this.
set -euo pipefail

usable() {
    "$1" - <<'EOF' >/dev/null 2>&1
import sys
import ensurepip, venv  # noqa: F401  (python3-venv on Debian)
sys.exit(sys.version_info < (3, 11))
EOF
}

for candidate in "${ZEROTOUCH_SYSTEM_PYTHON:-/usr/bin/python3}" "$(command -v python3 || true)"; do
    if [[ -n $candidate && -x $candidate ]] && usable "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done
echo "pick-python: no python3 3.11 or newer with venv and ensurepip found" >&2
exit 1
