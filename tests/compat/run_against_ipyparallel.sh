#!/usr/bin/env bash
# The differential check: run the compatibility suite against ipyparallel 9.2 instead of ipcluster.
#
# The tests import the package under test through tests/compat/target.py only, so the same
# tests run on both; on ipyparallel every test must pass, the ones marked as ipcluster's gaps
# included (their xfail mark applies to ipcluster only).
#
# Usage: tests/compat/run_against_ipyparallel.sh [pytest args...]   (default: all of tests/compat)
# Environment: IPP_VENV (default /tmp/venv-ipp) is made on first use, with
#   pip install 'ipyparallel==9.2.*' pytest pytest-timeout pytest-asyncio joblib numpy dill distributed
# It must be a virtualenv of its own: ipyparallel installs an `ipcluster` command too.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${IPP_VENV:-/tmp/venv-ipp}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'ipyparallel==9.2.*' pytest pytest-timeout pytest-asyncio joblib numpy dill distributed
fi
cd "$root"
# test paths among the arguments? else the whole compatibility suite
paths=("$here")
for arg in "$@"; do
    case "$arg" in tests/*|/*) paths=() ;; esac
done
# -p no:cacheprovider: leave the checkout's .pytest_cache to the ipcluster runs.
# ipyparallel 9.2 warns (DeprecationWarning) in places this project's "error" filter turns
# into failures; those warnings are ipyparallel's business, not the behaviour under test.
COMPAT_TARGET=ipyparallel exec "$venv/bin/python" -m pytest -p no:cacheprovider \
    -W "ignore::DeprecationWarning" -W "ignore::RuntimeWarning" -W "ignore::UserWarning" \
    "${paths[@]}" "$@"
