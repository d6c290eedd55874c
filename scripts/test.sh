#!/usr/bin/env bash
# The whole test suite, from a clean checkout: installs what it needs into
# .venv, checks format and lint, runs the Rust unit tests, builds and installs
# the wheel, then runs pytest against the installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check maturin pytest pytest-timeout ruff mypy

echo "== format and lint"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
.venv/bin/ruff format --check python tests benches examples
.venv/bin/ruff check python tests benches examples

echo "== Rust unit tests"
cargo test --quiet

echo "== build and install the wheel"
.venv/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps .
.venv/bin/python -m mypy.stubtest rwsgi._rwsgi --allowlist scripts/stubtest-allowlist.txt
.venv/bin/python -m mypy

echo "== behaviour tests"
.venv/bin/python -m pytest tests -p no:cacheprovider
