.PHONY: help dev build format lint test bench

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

dev:  ## editable debug build into .venv
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/pip install -q maturin pytest pytest-timeout ruff mypy
	.venv/bin/maturin develop

build:  ## release wheel into target/wheels
	.venv/bin/maturin build --release

format:  ## rewrite Rust and Python sources in place
	cargo fmt --all
	.venv/bin/ruff format python tests benches examples

lint:  ## the checks CI runs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	.venv/bin/ruff check python tests benches examples

test:  ## the whole suite (what .ci/run runs)
	bash scripts/test.sh

bench:  ## compare with the peers (see benches/README.md)
	bash benches/setup.sh && benches/.venv/bin/python benches/compare.py
