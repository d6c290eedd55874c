#!/usr/bin/env bash
# Installs everything benches/compare.py, nginx.py, reload.py, fleet.py,
# django_static.py and charts.py run: wrk, ab (apache2-utils), libev, iproute2
# and nginx-light (Debian), the peer servers, whitenoise, matplotlib and rwsgi
# (from this checkout) in benches/.venv, django_static.py's static files, and
# the bare hyper server (benches/hyper_bare, release build).
#
#   bash benches/setup.sh             # everything
#   bash benches/setup.sh --no-rwsgi  # peers only (rwsgi's build is skipped)
#   bash benches/setup.sh --rwsgi     # only (re)install rwsgi into the venv
#
# PYTHON picks the interpreter the venv is made from (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

peers=true
rwsgi=true
case "${1:-}" in
    "") ;;
    --no-rwsgi) rwsgi=false ;;
    --rwsgi) peers=false ;;
    *) echo "usage: $0 [--no-rwsgi | --rwsgi]" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi

if $peers; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y wrk apache2-utils libev-dev build-essential
    # fleet.py's network namespaces and veth pairs.
    if ! command -v ip >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y iproute2
    fi
    # nginx.py's and fleet.py's front: any Debian nginx with the uwsgi module will do.
    if [ ! -x /usr/sbin/nginx ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y nginx-light
    fi
    # bjoern and uWSGI compile C against libev / the interpreter's headers.
    "$venv/bin/python" -m pip install bjoern granian gunicorn uwsgi waitress
    # The apps of the flask_hello and django_* scenarios (pinned: their bodies
    # and per-request cost are the frameworks').
    "$venv/bin/python" -m pip install "flask==3.1.3" "django==5.2.19"
    # django_static.py: gunicorn's static files come from whitenoise (pinned
    # too: its per-request cost is in the figures); the 1 MiB file it serves
    # is generated (shop.css is committed; both are checked byte for byte).
    "$venv/bin/python" -m pip install "whitenoise==6.12.0"
    # charts.py's PNGs of the results (pinned: the same results give the same
    # pictures). Benchmark-only: rwsgi and its tests never import it.
    "$venv/bin/python" -m pip install "matplotlib==3.11.2"
    "$venv/bin/python" "$here/django_static.py" --make-static
    cargo build --release --manifest-path "$here/hyper_bare/Cargo.toml"
fi

if $rwsgi; then
    # A maturin build of the checkout (a few minutes: release profile, fat LTO).
    (cd "$root" && "$venv/bin/python" -m pip install --force-reinstall --no-deps .)
fi

echo "setup done: $venv"
