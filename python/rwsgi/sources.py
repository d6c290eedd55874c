"""Where the CLI's option values come from, lowest first: the table's defaults,
a native config file (``rwsgi.toml``, or ``[tool.rwsgi]`` in the project's
``pyproject.toml``, found from the current folder up), the environment
(``RWSGI_<NAME>``), then the command line. Each value keeps its origin, which
``rwsgi --print-config`` shows (``default``, ``FILE:LINE``, ``env NAME``,
``cli``).

TOML values are native (``workers = 4``, ``http = ["127.0.0.1:8000"]``) and go
to the table's checks as they are; environment values are text, read with each
option's ``from_text`` (a repeatable option takes a comma-separated list).
TOML is read with ``tomllib`` (Python 3.11+); on 3.10 the ``tomli`` backport is
used when installed, and a config file without it is an error that says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from rwsgi.options import OPTIONS, Option, OptionError

TYPE_CHECKING = False

if TYPE_CHECKING:  # typing costs the master ~1 MiB and 15 ms at start-up
    from typing import Any

__all__ = [
    "ENV_PREFIX",
    "Sourced",
    "find_config_file",
    "from_environment",
    "from_toml",
    "gather",
    "layer",
]

ENV_PREFIX = "RWSGI_"
"""Environment variables ``RWSGI_<OPTION NAME>`` set options (``RWSGI_WORKERS=4``)."""

APP_KEY = "app"
"""The file key and the ``RWSGI_APP`` variable that name the app to serve."""

# Private variables rwsgi itself passes to a process it starts.
_INTERNAL_ENV = frozenset({"RWSGI_DJANGO"})

_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}

Sourced = dict[str, tuple[object, str]]
"""Option name (or ``app``) -> (value, where it came from)."""


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; a folder this user may not look into has none."""
    try:
        return path.is_file()
    except PermissionError:
        return False


def find_config_file(start: Path | None = None) -> Path | None:
    """``rwsgi.toml`` in ``start`` (default: the current folder), else the first
    ``pyproject.toml`` with a ``[tool.rwsgi]`` table from there up."""
    folder = (start or Path.cwd()).resolve()
    native = folder / "rwsgi.toml"
    if _is_file(native):
        return native
    for candidate in (folder, *folder.parents):
        pyproject = candidate / "pyproject.toml"
        if _is_file(pyproject):
            text = pyproject.read_text(encoding="utf-8", errors="replace")
            if re.search(r"^\s*\[tool\.rwsgi\]", text, re.MULTILINE):
                return pyproject
            return None  # the project's own pyproject: stop looking above it
    return None


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef,import-not-found]
        except ModuleNotFoundError:
            raise OptionError(
                f"{path}: reading TOML on Python 3.10 needs the tomli package "
                "(pip install tomli), or Python 3.11+"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise OptionError(f"{path}: {error}") from None


def from_toml(path: Path) -> Sourced:
    """The options of a config file: the whole of ``rwsgi.toml``, or the
    ``[tool.rwsgi]`` table of a ``pyproject.toml``; keys are option names, with
    ``-`` or ``_``. An unknown key is an error naming it and its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise OptionError(f"{path}: {error}") from None
    # One read serves the parse and the line numbers.
    document = _parse_toml(path, text)
    table: Any = document
    if path.name == "pyproject.toml":
        table = document.get("tool", {}).get("rwsgi", {})
    if not isinstance(table, dict):
        raise OptionError(f"{path}: [tool.rwsgi] must be a table")
    lines = text.splitlines()
    found: Sourced = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        where = f"{path}:{_line_of(lines, key)}"
        if name != APP_KEY and name not in _BY_NAME:
            raise OptionError(f"{where}: unknown option {key!r}")
        found[name] = (value, where)
    return found


def _line_of(lines: list[str], key: str) -> int:
    """The line where ``key = ...`` is written (the first such line), 1-based."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(lines, 1):
        if pattern.match(line):
            return number
    return 0


def from_environment(environ: Mapping[str, str]) -> tuple[Sourced, list[str]]:
    """The options set by ``RWSGI_<NAME>`` variables, and the names of those
    that name no option (reported by ``--print-config``, not fatal: other tools
    may use the prefix)."""
    found: Sourced = {}
    unknown: list[str] = []
    for variable, text in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable in _INTERNAL_ENV:
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        origin = f"env {variable}"
        if name == APP_KEY:
            found[name] = (text, origin)
            continue
        option = _BY_NAME.get(name)
        if option is None:
            unknown.append(variable)
            continue
        try:
            if option.repeatable:
                items = [part.strip() for part in text.split(",") if part.strip()]
                value: object = [option.from_text(item) for item in items]
            else:
                value = option.from_text(text)
        except OptionError as error:
            raise OptionError(f"{origin}: {error}") from None
        found[name] = (value, origin)
    return found, sorted(unknown)


def layer(*sources: Sourced) -> Sourced:
    """Merge sources given lowest first: a later source's value replaces an earlier one's."""
    merged: Sourced = {}
    for source in sources:
        merged.update(source)
    return merged


def defaults() -> Sourced:
    """Every option's default, as the lowest source."""
    return {option.name: (option.default, "default") for option in OPTIONS}


def describe(config: Mapping[str, Any], origins: Mapping[str, str], app: str | None) -> str:
    """The resolved configuration, one ``name = value  (origin)`` line per option."""
    rows = [("app", repr(app), origins.get(APP_KEY, "cli" if app else "-"))]
    rows += [
        (option.name, repr(config.get(option.name)), origins.get(option.name, "default"))
        for option in OPTIONS
    ]
    width = max(len(name) + len(value) for name, value, _ in rows) + 3
    return "\n".join(f"{f'{name} = {value}':<{width}}  ({origin})" for name, value, origin in rows)


def gather(cli: Sourced, config: str | None = None) -> tuple[Sourced, list[str]]:
    """Every source merged, highest last: the config file (``config``, else
    the one ``find_config_file`` finds; ``"none"`` for no file), the
    environment, then ``cli``; with the ``RWSGI_*`` names that set nothing."""
    file: Sourced = {}
    if config != "none":
        path = Path(config) if config else find_config_file()
        if path is not None:
            if not path.is_file():
                raise OptionError(f"config: {str(path)!r} is not a file")
            file = from_toml(path)
    environment, unknown = from_environment(os.environ)
    return layer(file, environment, cli), unknown
