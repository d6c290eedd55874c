"""``python manage.py rwsgi_serve [addrport]``: runserver's interface, served by rwsgi.

It takes runserver's arguments (addrport, ``--ipv6``, ``--noreload``,
``--nothreading``, ``--nostatic``, ``--insecure``, ``--skip-checks``) plus
every rwsgi option, added from the same option table as the ``rwsgi`` CLI.
In this process it does what runserver does before serving (the DEBUG and
ALLOWED_HOSTS rule, the system checks, the unapplied-migrations notice, the
banner), checks that the address can be bound (runserver's one-line errors),
works out the static folders, then replaces itself with a fresh interpreter
that is the rwsgi master (``rwsgi.django._serve`` says why and how).

Development (DEBUG and no ``--noreload``): one worker, 4 threads, reload on
change of any file Django's autoreloader would watch (``--autoreload 1``).
Production (``--noreload`` or DEBUG=False): the full server, no watching.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from datetime import datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.commands.runserver import naiveip_re
from django.db import connections

from rwsgi import __version__
from rwsgi.cli import add_server_options, cli_message, options_from_args
from rwsgi.django._serve import exec_server, friendly_os_error
from rwsgi.options import OPTIONS, OptionError, normalize

# The table says which options the command leaves out: --http is addrport,
# and Django's own --pythonpath is already in sys.path.
SKIPPED_OPTIONS = frozenset(option.name for option in OPTIONS if not option.django)
DEFAULT_THREADS = 4  # runserver threads by default; --nothreading is 1
DEVELOPMENT_AUTORELOAD = 1.0


class Address(NamedTuple):
    """Where to listen: ``shown`` as the user wrote it (runserver's banner),
    ``ip`` and ``port`` for the option table (IP addresses only)."""

    shown: str
    ip: str
    port: int

    @property
    def option(self) -> str:
        """The ``--http`` value: ``IP:PORT`` or ``[IPV6]:PORT``."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def url(self, port: int | None = None) -> str:
        """The URL the banner shows."""
        host = f"[{self.shown}]" if ":" in self.shown else self.shown
        return f"http://{host}:{self.port if port is None else port}/"


def parse_addrport(addrport: str | None, use_ipv6: bool) -> Address:
    """runserver's addrport forms (``8000``, ``0.0.0.0:8000``, ``0:8000``,
    ``[::1]:8000``, ``host:8000``), a host name resolved to its first address;
    raises CommandError with runserver's messages."""
    if use_ipv6 and not socket.has_ipv6:
        raise CommandError("Your Python does not support IPv6.")
    if not addrport:
        host, port_text, fqdn = "", "8000", False
    else:
        match = naiveip_re.match(addrport)
        if match is None:
            raise CommandError(f'"{addrport}" is not a valid port number or address:port pair.')
        host, _ipv4, ipv6, fqdn_text, port_text = match.groups()
        host = host or ""
        fqdn = bool(fqdn_text)
        if ipv6:
            host, use_ipv6 = host[1:-1], True
        elif use_ipv6 and host and not fqdn:
            raise CommandError(f'"{host}" is not a valid IPv6 address.')
    port = int(port_text)
    if port > 65535:
        raise CommandError(f"{port_text!r} is not a valid port number.")
    if not host:
        host = "::1" if use_ipv6 else "127.0.0.1"
        return Address(host, host, port)
    if host == "0":
        return Address("0.0.0.0", "0.0.0.0", port)
    if not fqdn:
        return Address(host, host, port)
    family = socket.AF_INET6 if use_ipv6 else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except OSError as error:
        raise CommandError(f"Cannot resolve {host!r}: {error}") from None
    return Address(host, str(infos[0][4][0]), port)


def probe_bind(address: Address) -> int:
    """Bind (and release) the address as rwsgi will, so that a taken port is
    runserver's one-line error before the banner; the port (0 becomes a free one)."""
    family = socket.AF_INET6 if ":" in address.ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((address.ip, address.port))
        return int(probe.getsockname()[1])


class Command(BaseCommand):
    """``rwsgi_serve``: see the module docstring."""

    help = (
        "Serves the project with rwsgi: runserver's arguments plus rwsgi's options; "
        "development mode (DEBUG) reloads on code change, production mode does not."
    )
    requires_system_checks = ()  # run by handle(), as runserver does
    suppressed_base_arguments = {"--verbosity", "--traceback"}  # noqa: RUF012 - as runserver

    def add_arguments(self, parser: CommandParser) -> None:
        """runserver's arguments, then every rwsgi option but ``--http``."""
        parser.add_argument("addrport", nargs="?", help="Optional port number, or ipaddr:port")
        parser.add_argument(
            "--ipv6", "-6", action="store_true", dest="use_ipv6", help="Use an IPv6 address."
        )
        parser.add_argument(
            "--nothreading",
            action="store_false",
            dest="use_threading",
            help="One Python thread per worker (same as --threads 1).",
        )
        parser.add_argument(
            "--noreload",
            action="store_false",
            dest="use_reloader",
            help="Production mode even with DEBUG: no reload on code change.",
        )
        parser.add_argument(
            "--nostatic",
            action="store_false",
            dest="use_static_handler",
            help="Do not serve STATIC_URL (nor MEDIA_URL).",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            dest="insecure_serving",
            help="Serve static files from the finders even if DEBUG is False.",
        )
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        add_server_options(parser, skip=SKIPPED_OPTIONS)

    def handle(self, *args: Any, **options: Any) -> None:
        """Check like runserver, print its banner, then become the rwsgi master."""
        if not settings.DEBUG and not settings.ALLOWED_HOSTS:
            raise CommandError("You must set settings.ALLOWED_HOSTS if DEBUG is False.")
        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            # The fresh interpreter finds the settings only through it.
            raise CommandError(
                "rwsgi_serve needs DJANGO_SETTINGS_MODULE (or --settings): settings "
                "configured in code are not seen by the server it starts"
            )
        address = parse_addrport(options["addrport"], options["use_ipv6"])
        development = bool(settings.DEBUG) and options["use_reloader"]
        given = self._sourced(
            options_from_args(argparse.Namespace(**options), skip=SKIPPED_OPTIONS)
        )
        if not options["use_threading"]:
            given.setdefault("threads", 1)
        given.setdefault("threads", DEFAULT_THREADS)
        if development:
            given.setdefault("autoreload", DEVELOPMENT_AUTORELOAD)
            # runserver's request lines, written by the server's I/O side.
            given.setdefault("access_log", "-")
            given.setdefault("access_log_format", "runserver")
        given["http"] = [address.option]
        self._validate(given)

        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for connection in connections.all(initialized_only=True):
            connection.close()

        app = "rwsgi.django.wsgi:application"
        notes: list[str] = []
        if options["use_static_handler"]:
            from rwsgi.django._static import plan_static

            plan = plan_static(finders=bool(settings.DEBUG) or options["insecure_serving"])
            given["static_map"] = [*given.get("static_map", []), *plan.static_map]
            notes = plan.notes
            if plan.needs_handler:
                app = "rwsgi.django.wsgi:application_with_staticfiles"
        config = self._validate(given)

        try:
            port = probe_bind(address)
        except OSError as error:
            self.stderr.write(f"Error: {friendly_os_error(error)}")
            sys.exit(1)
        given["http"] = [address._replace(port=port).option]
        self._banner(address.url(port), development, config, notes)
        exec_server(app, given)

    def _sourced(self, cli: dict[str, Any]) -> dict[str, Any]:
        """The command line over RWSGI_<NAME> variables over rwsgi.toml or
        [tool.rwsgi] (found from the current folder), as for ``rwsgi``."""
        from rwsgi import sources

        try:
            merged, _ = sources.gather({name: (value, "cli") for name, value in cli.items()})
        except OptionError as error:
            raise CommandError(str(error)) from None
        merged.pop(sources.APP_KEY, None)  # the app is WSGI_APPLICATION
        return {name: value for name, (value, _) in merged.items() if name not in SKIPPED_OPTIONS}

    def _validate(self, given: dict[str, Any]) -> dict[str, Any]:
        """The options checked by the table now, so a bad one stops us before the banner."""
        try:
            return normalize(given)
        except (OptionError, TypeError) as error:
            raise CommandError(cli_message(str(error))) from None

    def _banner(
        self, url: str, development: bool, config: dict[str, Any], notes: list[str]
    ) -> None:
        """runserver's banner, with rwsgi's mode instead of its warning."""
        import django

        now = datetime.now().strftime("%B %d, %Y - %X")
        kind = "development" if development else "production"
        self.stdout.write(
            f"{now}\n"
            f"Django version {django.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting {kind} server at {url}\n"
            "Quit the server with CONTROL-C."
        )
        workers, threads = config["workers"], config["threads"]
        shape = (
            f"{workers} worker{'s' if workers != 1 else ''} x "
            f"{threads} thread{'s' if threads != 1 else ''}"
        )
        if config["autoreload"]:
            every = f"{config['autoreload']:g}"
            mode = f"{kind} mode, autoreload on (checks every {every} s), {shape}"
        else:
            mode = f"{kind} mode, {shape}, no reload on code change (SIGHUP reloads)"
        self.stdout.write(self.style.NOTICE(f"rwsgi {__version__}: {mode}."))
        for note in notes:
            self.stdout.write(f"Static files: {note}")
