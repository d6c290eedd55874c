"""The ``rwsgi`` command line, built from the option table."""

from __future__ import annotations

import argparse
import os
import re
import sys

from rwsgi import _rwsgi, sources
from rwsgi.loader import serve_spec
from rwsgi.options import OPTIONS, Option, OptionError, normalize

TYPE_CHECKING = False

if TYPE_CHECKING:  # typing costs the master ~1 MiB and 15 ms at start-up
    from collections.abc import Collection
    from typing import Any

__all__ = ["add_server_options", "build_parser", "cli_message", "main", "options_from_args"]

_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def _flag_names(names: tuple[str, ...]) -> list[str]:
    return [f"-{name}" if len(name) == 1 else "--" + name.replace("_", "-") for name in names]


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    names = [option.cli, *_flag_names(option.aliases), *(f"-{letter}" for letter in option.short)]
    if option.flag:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            *names, dest=option.name, action="store_true", default=None, help=option.help
        )
        if option.negation is not None:
            negations, help_text = option.negation
            group.add_argument(
                *_flag_names(negations), dest=option.name, action="store_false", help=help_text
            )
        return
    if option.bare is not None:
        parser.add_argument(
            *names,
            dest=option.name,
            nargs="?",
            const=option.bare,
            default=None,
            metavar=option.metavar,
            help=option.help,
        )
        return
    default_text = "" if option.default in (None, []) else f" (default: {option.default})"
    parser.add_argument(
        *names,
        dest=option.name,
        type=option.text,
        action="append" if option.repeatable else "store",
        default=None,
        metavar=option.metavar,
        help=option.help + default_text,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for every option in ``OPTIONS``."""
    parser = argparse.ArgumentParser(
        prog="rwsgi",
        description="Serve a WSGI application through rwsgi's Rust network core.",
    )
    parser.add_argument(
        "app",
        nargs="?",
        metavar="MODULE[:APP]",
        help="the WSGI callable to serve; MODULE alone means MODULE:application",
    )
    parser.add_argument("--version", action="version", version=f"rwsgi {_rwsgi.__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read options from this TOML file (default: ./rwsgi.toml, else [tool.rwsgi] of "
        "the project's pyproject.toml; 'none' reads no file); the environment (RWSGI_<NAME>) "
        "overrides it and the command line overrides both",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved options and where each came from, then exit",
    )
    parser.add_argument(
        "--ini",
        metavar="FILE[:SECTION]",
        help="read the [uwsgi] (or SECTION) section of a uWSGI ini file; flags given here win",
    )
    parser.add_argument(
        "--ini-lenient",
        action="store_true",
        help="with --ini, skip unknown uWSGI keys with a note instead of refusing them",
    )
    add_server_options(parser)
    return parser


def add_server_options(parser: argparse.ArgumentParser, skip: Collection[str] = ()) -> list[Option]:
    """Add a flag for every option of ``OPTIONS`` except those named in ``skip``.

    Other front doors (the Django command) call this so that they take exactly
    the CLI's flags; read the values back with ``options_from_args``. Returns
    the options added.
    """
    added = []
    for option in OPTIONS:
        if option.name not in skip:
            _add_option(parser, option)
            added.append(option)
    return added


def options_from_args(args: argparse.Namespace, skip: Collection[str] = ()) -> dict[str, Any]:
    """The options given on the command line (those left unset are absent),
    ready for ``normalize`` or ``serve(**options)``; ``skip`` as given to
    ``add_server_options`` (a name it skipped may be another flag's dest)."""
    return {
        option.name: getattr(args, option.name)
        for option in OPTIONS
        if option.name not in skip and getattr(args, option.name, None) is not None
    }


def main(argv: list[str] | None = None) -> int:
    """Run the server from command-line arguments; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["top"]:  # a client of a running server's --stats listener
        from rwsgi.top import main as top

        return top(argv[1:])
    if argv[:1] == ["bundle"]:  # a subcommand of its own, before the server's flags
        from rwsgi.bundle import main as bundle

        return bundle(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    origins: dict[str, str] = {}
    try:
        sourced, unknown_env = _layered_sources(args)
        origins = {name: origin for name, (_, origin) in sourced.items()}
        app = sourced.pop(sources.APP_KEY, (None, ""))[0]
        if app is not None and not isinstance(app, str):
            raise OptionError(f"app must be a string such as 'mysite.wsgi', not {app!r}")
        config = normalize({name: value for name, (value, _) in sourced.items()})
    except (OptionError, TypeError) as error:
        parser.error(_located(str(error), origins))
    if args.print_config:
        print(sources.describe(config, origins, app))
        for variable in unknown_env:
            print(f"# ignored: {variable} names no option")
        return 0
    if not app:
        parser.error("the app to serve is required, e.g. rwsgi mysite.wsgi:application")
    try:
        serve_spec(app, config)
    except (OSError, RuntimeError, ValueError) as error:
        print(f"rwsgi: {error}", file=sys.stderr)
        return 1
    return 0


def _layered_sources(args: argparse.Namespace) -> tuple[sources.Sourced, list[str]]:
    """The options from every source (see ``sources.gather``). ``--ini`` is the
    config file then: rwsgi.toml and pyproject.toml are not looked for (an
    explicit ``--config`` still layers above it)."""
    cli = {name: (value, "cli") for name, value in options_from_args(args).items()}
    if args.app:
        cli[sources.APP_KEY] = (args.app, "cli")
    config = args.config if args.config or not args.ini else "none"
    gathered, unknown = sources.gather(cli, config)
    return sources.layer(_apply_ini(args), gathered), unknown


def _apply_ini(args: argparse.Namespace) -> sources.Sourced:
    """The options (and app) of ``--ini FILE[:SECTION]``, each with its FILE:LINE.

    Prints the file's notes and sets its ``env`` entries (before the app is
    loaded, as uWSGI does). What uWSGI's behaviour implies for the file
    (``ini.defaults``) lies under everything the file itself says.
    """
    if not args.ini:
        return {}
    from rwsgi.ini import read_ini, split_spec

    ini = read_ini(*split_spec(args.ini), lenient=args.ini_lenient)
    for note in ini.notes:
        print(f"rwsgi: ini {note}", file=sys.stderr)
    for key, value in ini.env:
        os.environ[key] = value
    found = {name: (value, f"{ini.path} (uWSGI's default)") for name, value in ini.defaults.items()}
    found |= {name: (value, ini.origins.get(name, ini.path)) for name, value in ini.options.items()}
    if ini.app is not None:
        found[sources.APP_KEY] = (ini.app, ini.origins.get(sources.APP_KEY, ini.path))
    return found


def _located(message: str, origins: dict[str, str]) -> str:
    """An option error, prefixed with where a file or the environment set the
    value (``rwsgi.toml:3: workers ...``); a command-line one names its flag."""
    origin = origins.get(_leading_name(message), "cli")
    return cli_message(message) if origin == "cli" else f"{origin}: {message}"


def _leading_name(message: str) -> str:
    """The option an error message starts with. The whole leading word: a
    prefix test took http_socket for http."""
    return re.split(r"[^a-z_]", message, maxsplit=1)[0]


def cli_message(message: str) -> str:
    """Name the option as its flag: ``http_socket: ...`` becomes ``--http-socket: ...``."""
    name = _leading_name(message)
    option = _BY_NAME.get(name)
    return message if option is None else option.cli + message[len(name) :]
