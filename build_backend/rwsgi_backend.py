"""rwsgi's PEP 517 build backend: maturin's, with one default changed.

maturin's PEP 517 hooks build with ``--compatibility off`` unless told
otherwise, so ``pip wheel .`` made a ``linux_x86_64`` wheel that PyPI refuses
and other machines cannot trust. Here a wheel is checked and tagged as PyPI
requires (manylinux/musllinux) by default; ``MATURIN_PEP517_ARGS`` or
``-C maturin.build-args=...`` still choose otherwise. Editable installs and
sdists are maturin's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import maturin
from maturin import (  # noqa: F401 - the hooks pip calls, re-exported
    build_editable,
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

DEFAULT_ARGS = "--compatibility pypi"


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """maturin's wheel, checked and tagged for PyPI unless asked otherwise."""
    if not maturin.get_maturin_pep517_args(config_settings):
        os.environ["MATURIN_PEP517_ARGS"] = DEFAULT_ARGS
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
