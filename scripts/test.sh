#!/usr/bin/env bash
# The whole test suite, from a clean checkout: installs what it needs into
# .venv, checks format and lint, runs the Rust unit tests, builds and installs
# the wheel, then runs pytest against the installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."

# The nginx tests run a private nginx in front of rwsgi: install it if missing.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing nginx-light"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
    else
        echo "nginx is needed by the tests: run apt-get install -y nginx-light as root" >&2
        exit 1
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check maturin pytest pytest-timeout ruff mypy auditwheel \
    "Django>=5.2,<5.3" "django-stubs>=5.2,<5.3" uwsgitop prometheus_client

echo "== format and lint"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
.venv/bin/ruff format --check .
.venv/bin/ruff check .

echo "== Rust unit tests"
cargo test --workspace --quiet

echo "== build and install the wheel"
.venv/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps .
.venv/bin/python -m mypy.stubtest rwsgi._rwsgi --allowlist scripts/stubtest-allowlist.txt
.venv/bin/python -m mypy

echo "== behaviour tests"
.venv/bin/python -m pytest tests -p no:cacheprovider
