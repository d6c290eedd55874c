"""The one option table.

Every option rwsgi knows is one `Option` here. ``serve()`` validates its keyword
arguments with it, the CLI builds its argparse parser from it, and later front
doors (ini files, environment variables, the Django command) read it too, so an
option is never listed twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

TYPE_CHECKING = False

if TYPE_CHECKING:  # typing costs the master ~1 MiB and 15 ms at start-up
    from typing import Any

__all__ = ["OPTIONS", "Option", "OptionError", "normalize", "parse_mounts", "text_bool"]


class OptionError(ValueError):
    """A configuration value is invalid; the message names the option."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise OptionError(f"{name} must be at least 1, got {value}")
    return value


def _backlog(name: str, value: object) -> int:
    """A listen queue length: at least 1, at most what listen(2) takes (the
    kernel then caps it at net.core.somaxconn)."""
    value = _positive_int(name, value)
    if value > 2**31 - 1:
        raise OptionError(f"{name} must be at most 2147483647, got {value}")
    return value


def _non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise OptionError(f"{name} must be zero or more, got {value}")
    return value


MAX_SECONDS = 365 * 24 * 60 * 60
"""The longest timeout accepted (one year): far beyond any real use, and small
enough that every deadline computed from it stays within the clock's range."""


def _non_negative_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    # Written so that NaN, which fails every comparison, is refused too.
    if not 0 <= value <= MAX_SECONDS:
        raise OptionError(
            f"{name} must be from 0 to {MAX_SECONDS:,} seconds (one year), got {value}"
        )
    return float(value)


def _url_path(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if not value.startswith("/") or any(ch in value for ch in "?# ") or not value.isprintable():
        raise OptionError(
            f"{name} must be a URL path starting with /, such as /-/ready, got {value!r}"
        )
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def _directory(name: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a text path")
    if not os.path.isdir(path):
        raise OptionError(f"{name}: {path!r} is not a directory")
    return path


def _spool_dir(name: str, value: object) -> str | None:
    """A folder the worker can create files in, made absolute before --chdir applies."""
    if value is None:
        return None
    path = os.path.abspath(_directory(name, value))
    if not os.access(path, os.W_OK | os.X_OK):
        raise OptionError(f"{name}: {path!r} is not writable")
    return path


def _default_spool_dir() -> str:
    """$TMPDIR, else the first writable of /tmp, /var/tmp...: resolved once, in the master."""
    import tempfile

    return os.path.abspath(tempfile.gettempdir())


def _pidfile(name: str, value: object) -> str | None:
    """A file path, made absolute before --chdir applies; its folder must exist."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise OptionError(f"{name} must be a non-empty text path")
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise OptionError(f"{name}: {path!r} is a directory")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise OptionError(f"{name}: the folder {folder!r} does not exist")
    return path


def _socket_activated() -> bool:
    """systemd passed this process its listening sockets (LISTEN_FDS, LISTEN_PID)."""
    return os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get(
        "LISTEN_FDS", "0"
    ) not in ("", "0")


def _string_list(name: str, value: object) -> list[str]:
    items: list[object]
    if isinstance(value, (str, os.PathLike)):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise TypeError(f"{name} must be a string or a list of strings, not {type(value).__name__}")
    result: list[str] = []
    for item in items:
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str):
            raise TypeError(f"{name} entries must be strings, not {type(item).__name__}")
        result.append(item)
    return result


def parse_tcp_address(name: str, text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[V6]:PORT`` (``:PORT`` means all IPv4 addresses)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise OptionError(f"{name}: {text!r} is not [IPV6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise OptionError(f"{name}: {text!r} is not HOST:PORT")
        if ":" in host:
            raise OptionError(f"{name}: write IPv6 addresses in brackets, as [{host}]:{port_text}")
        host = host or "0.0.0.0"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise OptionError(f"{name}: port {port_text!r} in {text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise OptionError(f"{name}: port {port} in {text!r} is out of range 0-65535")
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise OptionError(
            f"{name}: {host!r} in {text!r} is not an IP address (host names are not resolved)"
        ) from None
    return host, port


def _http_addresses(name: str, value: object) -> list[str]:
    addresses = _string_list(name, value)
    for address in addresses:
        parse_tcp_address(name, address)
    return addresses


def is_unix_address(text: str) -> bool:
    """A unix socket path (anything without ``:``, or ``unix:PATH``) or an abstract ``@name``."""
    return text.startswith(("/", ".", "@", "unix:")) or ":" not in text


def _any_addresses(name: str, value: object) -> list[str]:
    addresses = _string_list(name, value)
    for address in addresses:
        if is_unix_address(address):
            path = address.removeprefix("unix:")
            if path in ("", "@"):
                raise OptionError(f"{name}: {address!r} names no socket path")
            if "\0" in path:
                raise OptionError(f"{name}: {address!r} contains a NUL byte")
        else:
            parse_tcp_address(name, address)
    return addresses


def _stats_address(name: str, value: object) -> str | None:
    """One address for the stats server: ``HOST:PORT``, a unix path or ``@name``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    return _any_addresses(name, [value])[0]


def _octal_mode(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an octal mode such as '660'")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            raise OptionError(f"{name}: {value!r} is not an octal mode such as 660") from None
    else:
        raise TypeError(f"{name} must be an octal mode such as '660', not {type(value).__name__}")
    if not 0 <= mode <= 0o777:
        raise OptionError(f"{name}: mode {value!r} is out of range 000-777")
    return mode


def _owner(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or value.count(":") > 1:
        raise OptionError(f"{name} must be USER, USER:GROUP or :GROUP, got {value!r}")
    import grp
    import pwd

    user, _, group = value.partition(":")
    for part, lookup, kind in ((user, pwd.getpwnam, "user"), (group, grp.getgrnam, "group")):
        if part and not part.isdigit():
            try:
                lookup(part)
            except KeyError:
                raise OptionError(f"{name}: no {kind} named {part!r}") from None
    return value


def _run_as(kind: str) -> Callable[[str, object], int | None]:
    """A check for ``uid`` (``kind`` "user") or ``gid`` ("group"): a name or a
    number, resolved to the number; switching needs the server to start as root."""

    def check(name: str, value: object) -> int | None:
        if value is None:
            return None
        import grp
        import pwd

        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not text:
            raise OptionError(f"{name} must be a {kind} name or number, got {value!r}")
        if text.isdigit():
            number = int(text)
        else:
            try:
                number = pwd.getpwnam(text).pw_uid if kind == "user" else grp.getgrnam(text).gr_gid
            except KeyError:
                raise OptionError(f"{name}: no {kind} named {text!r}") from None
        current = os.geteuid() if kind == "user" else os.getegid()
        if number != current and os.geteuid() != 0:
            raise OptionError(
                f"{name}: switching to {kind} {text!r} needs the server to start as root "
                f"(it runs as {'uid' if kind == 'user' else 'gid'} {current}); start it as "
                f"that {kind} instead (systemd User=/Group=)"
            )
        return number

    return check


_user = _run_as("user")
_group = _run_as("group")


def _networks(name: str, value: object) -> list[str]:
    import ipaddress

    items: list[str] = []
    for entry in _string_list(name, value):
        items.extend(part.strip() for part in entry.split(",") if part.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise OptionError(f"{name}: {item!r} is not an IP address or CIDR network") from None
    return items


def _mount_prefix(name: str, text: str) -> str:
    """A URL prefix such as ``/static``: starts with /, no trailing / (``/`` itself stays)."""
    if not text.startswith("/") or any(ch in text for ch in "?#%=\\ ") or not text.isprintable():
        raise OptionError(
            f"{name}: the URL prefix must start with / and hold no space, ?, #, %, = or \\, "
            f"got {text!r}"
        )
    if "/../" in text + "/" or "/./" in text + "/" or "//" in text:
        raise OptionError(f"{name}: the URL prefix {text!r} has an empty, . or .. segment")
    return text.rstrip("/") or "/"


def parse_mounts(name: str, value: object) -> list[str]:
    """``PREFIX=DIR`` entries (or a mapping of prefix to folder, or to a list of folders),
    each folder made absolute before --chdir applies; kept in order, as a prefix given
    twice is searched in that order."""
    pairs: list[tuple[str, object]] = []
    if isinstance(value, Mapping):
        for prefix, folders in value.items():
            if not isinstance(prefix, str):
                raise TypeError(f"{name} keys must be URL prefixes (str)")
            for folder in folders if isinstance(folders, (list, tuple)) else [folders]:
                pairs.append((prefix, folder))
    else:
        for entry in _string_list(name, value):
            prefix, sep, folder = entry.partition("=")
            if not sep or not folder:
                raise OptionError(f"{name}: {entry!r} is not PREFIX=DIR, e.g. /static=./static")
            pairs.append((prefix, folder))
    result: list[str] = []
    for prefix, folder in pairs:
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"{name}: the folder for {prefix!r} must be a path")
        path = os.fspath(folder)
        if not isinstance(path, str) or "\0" in path:
            raise OptionError(f"{name}: the folder for {prefix!r} must be a text path")
        if not os.path.isdir(path):
            raise OptionError(f"{name}: {path!r} (for {prefix!r}) is not a directory")
        result.append(f"{_mount_prefix(name, prefix)}={os.path.abspath(path)}")
    return result


def _absolute_paths(name: str, value: object) -> list[str]:
    """File paths, made absolute before --chdir applies (they need not exist yet)."""
    return [os.path.abspath(path) for path in _string_list(name, value)]


def _optional_whole_seconds(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number of seconds, not {type(value).__name__}")
    if not 0 <= value <= MAX_SECONDS:
        raise OptionError(f"{name} must be from 0 to {MAX_SECONDS:,} seconds, got {value}")
    return value


def _log_destination(name: str, value: object) -> str | None:
    """``-`` or a file path, made absolute before --chdir applies; its folder must exist."""
    if value is None or value == "-":
        return value
    return _pidfile(name, value)


def _access_log_destination(name: str, value: object) -> str | None:
    """``-``, ``stderr`` (the error log) or a file, as ``_log_destination``."""
    if value == "stderr":
        return value
    return _log_destination(name, value)


def _access_log_format(name: str, value: object) -> str:
    """A format name or a template; the server parses it once (and names a
    placeholder it does not know)."""
    if not isinstance(value, str) or not value:
        raise OptionError(f"{name} must be a format name or a %(name) template, got {value!r}")
    return value


def _choice(*choices: str) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        if value not in choices:
            raise OptionError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def text_bool(text: str) -> bool:
    """A boolean written as text (ini files, the environment): true/yes/on/1 or
    false/no/off/0, in any case."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on", "y"):
        return True
    if lowered in ("0", "false", "no", "off", "n", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false, yes/no, on/off, 1/0)")


# How a value written as text becomes what each check takes, by the check
# itself (not its name: renaming a validator must not change an option's type).
_FROM_TEXT: dict[Callable[[str, object], Any], Callable[[str], Any]] = {
    _positive_int: int,
    _backlog: int,
    _non_negative_int: int,
    _non_negative_seconds: float,
    _optional_whole_seconds: int,
    _bool: text_bool,
}


class Option:
    """One server option: its name, how it is checked, its default and its help."""

    __slots__ = (
        "aliases",
        "bare",
        "check",
        "default",
        "django",
        "flag",
        "help",
        "ini",
        "metavar",
        "name",
        "negation",
        "repeatable",
        "short",
        "text",
    )

    def __init__(
        self,
        name: str,
        check: Callable[[str, object], Any],
        default: Any,
        help: str,
        metavar: str | None = None,
        repeatable: bool = False,
        flag: bool = False,
        aliases: tuple[str, ...] = (),
        negation: tuple[tuple[str, ...], str] | None = None,
        bare: str | None = None,
        django: bool = True,
        ini: tuple[str, ...] = (),
        short: str = "",
    ) -> None:
        self.name = name
        self.check = check
        self.default = default
        self.help = help
        self.metavar = metavar
        self.repeatable = repeatable
        self.flag = flag
        self.aliases = aliases
        """Other long CLI names (often uWSGI's or gunicorn's: ``--processes``, ``--bind``)."""
        self.short = short
        """Single-letter CLI flags, one per character (``-w``, ``-p``)."""
        self.negation = negation
        """For a flag: the CLI names that turn it off, and their help (``--lazy``)."""
        self.bare = bare
        """The value of the flag given without one (``--chmod-socket`` alone: 666)."""
        self.django = django
        """Whether ``manage.py rwsgi_serve`` takes it (``--http`` is its addrport)."""
        self.ini = ini
        """The uWSGI ini keys that set it as they are (``processes``, ``workers``);
        keys needing more than that have their own handlers in ``rwsgi.ini``."""
        self.text: Callable[[str], Any] = _FROM_TEXT.get(check, str)
        """Turns one value written as text (a CLI argument, an ini or environment
        value) into what ``check`` takes."""

    def from_text(self, text: str) -> Any:
        """``text`` as this option's value, before ``check``; a value that is not
        of its type is an ``OptionError`` naming the option."""
        try:
            return self.text(text)
        except ValueError:
            kind = getattr(self.text, "__name__", "value")
            raise OptionError(f"{self.name}: {text!r} is not a valid {kind}") from None

    def __repr__(self) -> str:
        return f"Option({self.name!r})"

    @property
    def cli(self) -> str:
        """The long CLI flag, e.g. ``--graceful-timeout``."""
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "http",
        _http_addresses,
        [],
        "serve HTTP/1.1 on HOST:PORT (repeatable; [::1]:8000 for IPv6; port 0 picks a free one)",
        metavar="ADDR:PORT",
        repeatable=True,
        aliases=("bind",),
        short="b",
        django=False,
        ini=("http",),
    ),
    Option(
        "http_socket",
        _any_addresses,
        [],
        "serve HTTP/1.1 on a unix socket path (or @abstract name) or HOST:PORT (repeatable)",
        metavar="ADDR",
        repeatable=True,
        ini=("http-socket",),
    ),
    Option(
        "socket",
        _any_addresses,
        [],
        "serve the binary uwsgi protocol, for nginx uwsgi_pass, on a unix socket path "
        "(or @abstract name) or HOST:PORT (repeatable)",
        metavar="ADDR",
        repeatable=True,
        aliases=("uwsgi_socket",),
        short="s",
        ini=("socket", "uwsgi-socket"),
    ),
    Option(
        "chmod_socket",
        _octal_mode,
        None,
        "permissions of the unix sockets created (octal; the flag alone means 666)",
        metavar="MODE",
        bare="666",
    ),
    Option(
        "chown_socket",
        _owner,
        None,
        "owner of the unix sockets created: USER, USER:GROUP or :GROUP",
        metavar="USER[:GROUP]",
        ini=("chown-socket",),
    ),
    Option(
        "uid",
        _user,
        None,
        "user the workers run as (a name or a number); the master binds the sockets "
        "and stays root to supervise, as gunicorn's --user does; needs root",
        metavar="USER",
        ini=("uid",),
    ),
    Option(
        "gid",
        _group,
        None,
        "group the workers run as (a name or a number); default: the --uid user's "
        "primary group; needs root",
        metavar="GROUP",
        ini=("gid",),
    ),
    Option(
        "uwsgi_allow_from",
        _networks,
        [],
        "addresses or CIDR networks allowed to connect to TCP uwsgi listeners (repeatable, "
        "or comma-separated); required when such a listener is not on loopback",
        metavar="CIDR",
        repeatable=True,
    ),
    Option(
        "workers",
        _positive_int,
        1,
        "number of worker processes (one per core is the usual setting)",
        metavar="N",
        aliases=("processes",),
        short="wp",
        ini=("processes", "workers"),
    ),
    Option(
        "threads",
        _positive_int,
        1,
        "Python threads per worker: app calls that can run at once in one worker",
        metavar="N",
        ini=("threads",),
    ),
    Option(
        "backlog",
        _backlog,
        1024,
        "listen queue length of each socket (uWSGI's 100 drops connections under load)",
        metavar="N",
        aliases=("listen",),
        ini=("listen",),
    ),
    Option(
        "graceful_timeout",
        _non_negative_seconds,
        30.0,
        "seconds in-flight requests get to finish on SIGTERM/SIGINT before workers are killed",
        metavar="SECONDS",
        ini=("reload-mercy", "worker-reload-mercy"),
    ),
    # -- static files, internal redirects and autoreload (issue 14) --
    Option(
        "static_map",
        parse_mounts,
        [],
        "serve the files of DIR under the URL PREFIX from Rust, without the app (repeatable; "
        "a prefix given again is searched next); a missing file goes on to the app",
        metavar="PREFIX=DIR",
        repeatable=True,
        ini=("static-map",),
    ),
    Option(
        "static_expires",
        _optional_whole_seconds,
        None,
        "send Cache-Control: public, max-age=SECONDS with static files (names holding "
        "Django's 12-hex-digit hash are always immutable for a year)",
        metavar="SECONDS",
    ),
    Option(
        "static_strict",
        _bool,
        False,
        "answer 404 for a missing file under a --static-map prefix instead of calling the app",
        flag=True,
    ),
    Option(
        "static_confine",
        _bool,
        False,
        "refuse (404) symbolic links that resolve outside their --static-map folder, for "
        "folders where uploads land (by default links are followed, as nginx does)",
        flag=True,
    ),
    Option(
        "internal_map",
        parse_mounts,
        [],
        "folders the app may hand to the server with an X-Accel-Redirect or X-Sendfile "
        "response header naming PREFIX/file (repeatable; never served to clients directly)",
        metavar="PREFIX=DIR",
        repeatable=True,
    ),
    Option(
        "autoreload",
        _non_negative_seconds,
        0.0,
        "development: every SECONDS, look for changed source files of the loaded app and "
        "reload when one changed (0: off); implies loading in the loader, not --lazy",
        metavar="SECONDS",
        aliases=("py_autoreload",),
        ini=("py-autoreload",),
    ),
    Option(
        "touch_reload",
        _absolute_paths,
        [],
        "reload the code, as SIGHUP does, when one of these files is touched (its "
        "modification time changes; checked every second; repeatable)",
        metavar="FILE",
        repeatable=True,
        ini=("touch-reload",),
    ),
    # -- the access log and the error log (issue 16) --
    Option(
        "access_log",
        _access_log_destination,
        None,
        "log one line per request to this file, - for standard output or stderr for the "
        "error log (--log-file), written by the I/O side after the response is sent (off by "
        "default)",
        metavar="PATH",
    ),
    Option(
        "access_log_format",
        _access_log_format,
        "common",
        "layout of --access-log lines: common, combined (Apache's), runserver (Django's), "
        "json, or a template in uWSGI's logformat syntax (its placeholders are listed in the "
        "README's Logging section)",
        metavar="FORMAT",
        ini=("logformat", "log-format"),
    ),
    Option(
        "disable_access_log",
        _bool,
        False,
        "no access log, whatever else turns it on (the Django development mode, an ini file "
        "without disable-logging); uWSGI's disable-logging",
        flag=True,
    ),
    Option(
        "log_file",
        _pidfile,
        None,
        "write the server log (master, workers, the app's logging and wsgi.errors, stray "
        "prints) to this file instead of stderr: opened for appending, its folder must exist; "
        "SIGUSR1 opens it again (logrotate)",
        metavar="PATH",
        ini=("logto",),
    ),
    Option(
        "log_level",
        _choice("debug", "info", "warning", "error"),
        "info",
        "least important server log lines written: debug, info, warning or error (also for "
        "the app's logging when it configured none)",
        metavar="LEVEL",
    ),
    Option(
        "log_format",
        _choice("text", "json"),
        "text",
        "server log lines as text ([rwsgi PID] LEVEL message) or json (one object a line: "
        "time, level, pid, worker, source, message)",
        metavar="FORMAT",
    ),
    # Request timeouts (harakiri).
    Option(
        "harakiri",
        _non_negative_seconds,
        0.0,
        "seconds an app call may run (streamed body included) before the client gets a 504 "
        "and rwsgi.RequestTimeout is raised in its thread; 0 turns it off",
        metavar="SECONDS",
        aliases=("timeout",),
        ini=("harakiri",),
    ),
    Option(
        "harakiri_grace",
        _non_negative_seconds,
        5.0,
        "seconds a timed-out thread gets to unwind (a call blocked in C sees the exception "
        "only when it returns) before its worker is replaced",
        metavar="SECONDS",
    ),
    # -- systemd, pidfile, process titles (issue 13)
    Option(
        "pidfile",
        _pidfile,
        None,
        "write the master's pid to this file once listening (removed at exit; refused if "
        "another running rwsgi holds it)",
        metavar="PATH",
        ini=("pidfile", "safe-pidfile"),
    ),
    # -- stats and metrics (issue 16) --
    Option(
        "stats",
        _stats_address,
        None,
        "serve uWSGI's stats JSON (what uwsgitop reads) to each client of HOST:PORT, a unix "
        "socket path or @abstract name, from the master",
        metavar="ADDR",
        ini=("stats", "stats-server"),
    ),
    Option(
        "stats_http",
        _bool,
        False,
        "speak HTTP on --stats: GET /metrics answers Prometheus text, any other GET the JSON",
        flag=True,
        ini=("stats-http",),
    ),
    # -- connection timeouts, draining and readiness (issue 13, connection side) --
    Option(
        "keepalive_timeout",
        _non_negative_seconds,
        5.0,
        "seconds a kept-alive connection may wait idle for its next request (0: no limit)",
        metavar="SECONDS",
    ),
    Option(
        "write_timeout",
        _non_negative_seconds,
        30.0,
        "seconds a write to a client may make no progress (it stopped reading) before the "
        "connection is closed and the app's response closed (0: no limit)",
        metavar="SECONDS",
    ),
    Option(
        "health_path",
        _url_path,
        None,
        "answer GET/HEAD for this path in Rust, without calling the app: 200 while serving, "
        "503 once the worker drains (e.g. /-/ready)",
        metavar="PATH",
    ),
    Option(
        "header_timeout",
        _non_negative_seconds,
        10.0,
        "seconds a client gets to send a request head: from the connection's start, or "
        "from the first byte of a later request on a kept-alive connection",
        metavar="SECONDS",
    ),
    Option(
        "body_timeout",
        _non_negative_seconds,
        30.0,
        "seconds a client may stay silent while sending a request body",
        metavar="SECONDS",
    ),
    Option(
        "max_body_size",
        _positive_int,
        1 << 30,
        "largest request body accepted, in bytes (larger gets 413)",
        metavar="BYTES",
        aliases=("limit_post",),
        ini=("limit-post",),
    ),
    Option(
        "post_buffering",
        _non_negative_int,
        1 << 20,
        "request bodies larger than this many bytes are spooled to an unnamed file in "
        "--spool-dir instead of memory (0 spools every body)",
        metavar="BYTES",
        ini=("post-buffering",),
    ),
    Option(
        "spool_dir",
        _spool_dir,
        None,
        "folder for spooled request bodies (default: $TMPDIR or /tmp); the files have no "
        "name, so nothing is left there even if a worker is killed",
        metavar="DIR",
    ),
    # -- recycling: workers replaced (a new one ready first) after a while --
    Option(
        "max_requests",
        _non_negative_int,
        0,
        "replace a worker after it has served this many requests (0: never); its "
        "replacement accepts before it stops",
        metavar="N",
        ini=("max-requests",),
    ),
    Option(
        "max_requests_jitter",
        _non_negative_int,
        0,
        "add a random 0..N to each worker's --max-requests so they are not all due together",
        metavar="N",
        aliases=("max_requests_delta",),
        ini=("max-requests-delta",),
    ),
    Option(
        "max_lifetime",
        _non_negative_seconds,
        0.0,
        "replace a worker after it has run this many seconds (0: never)",
        metavar="SECONDS",
        aliases=("max_worker_lifetime",),
        ini=("max-worker-lifetime",),
    ),
    Option(
        "max_lifetime_jitter",
        _non_negative_seconds,
        0.0,
        "add a random 0..SECONDS to each worker's --max-lifetime",
        metavar="SECONDS",
    ),
    Option(
        "reload_on_rss",
        _non_negative_int,
        0,
        "replace a worker whose resident memory passes this many MiB, sampled after "
        "each request and every second (0: never)",
        metavar="MB",
        ini=("reload-on-rss",),
    ),
    Option(
        "health_drain_delay",
        _non_negative_seconds,
        0.0,
        "on SIGTERM/SIGINT, keep serving this many seconds with --health-path answering "
        "503 before the listeners close (time for a load balancer to stop sending)",
        metavar="SECONDS",
    ),
    Option(
        "chdir",
        _directory,
        None,
        "change to this directory before loading the app",
        metavar="DIR",
        ini=("chdir",),
    ),
    Option(
        "pythonpath",
        _string_list,
        [],
        "add a directory to sys.path (repeatable)",
        metavar="DIR",
        repeatable=True,
        django=False,
        ini=("pythonpath", "python-path", "pp"),
    ),
    Option(
        "preload",
        _bool,
        True,
        "load the app once per code generation before forking the workers (--lazy loads it "
        "in each worker)",
        flag=True,
        negation=(
            ("lazy", "lazy_apps"),
            "load the app in each worker after forking instead of in the master",
        ),
    ),
)

_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def normalize(values: Mapping[str, object]) -> dict[str, Any]:
    """Validate ``values`` against the table and fill in defaults.

    Raises ``TypeError`` for an unknown option or a value of the wrong type and
    ``OptionError`` (a ``ValueError``) for a bad value; both name the option.
    """
    config: dict[str, Any] = {}
    for key, value in values.items():
        option = _BY_NAME.get(key)
        if option is None:
            raise TypeError(f"unknown option {key!r}")
        config[key] = option.check(key, value)
    for option in OPTIONS:
        if option.name not in config:
            default = option.default
            config[option.name] = list(default) if isinstance(default, list) else default
    if config["spool_dir"] is None:
        config["spool_dir"] = _default_spool_dir()
    if not (config["http"] or config["http_socket"] or config["socket"] or _socket_activated()):
        raise OptionError(
            "no listener: give --http 127.0.0.1:8000, --http-socket ADDR or --socket ADDR"
        )
    _check_uwsgi_exposure(config)
    if config["stats_http"] and config["stats"] is None:
        raise OptionError("stats_http: there is no --stats listener to speak HTTP on")
    if config["autoreload"] and not config["preload"]:
        raise OptionError(
            "autoreload: the loader watches the files of the app it loaded, so it cannot be "
            "combined with --lazy"
        )
    return config


def _check_uwsgi_exposure(config: dict[str, Any]) -> None:
    """A TCP uwsgi listener trusts REMOTE_ADDR, HTTPS... from its peer: refuse to expose it."""
    import ipaddress

    if config["uwsgi_allow_from"]:
        return
    for address in config["socket"]:
        if is_unix_address(address):
            continue
        host, _ = parse_tcp_address("socket", address)
        if not ipaddress.ip_address(host).is_loopback:
            raise OptionError(
                f"socket: {address!r} is not a loopback address, and the uwsgi protocol trusts "
                "whatever its peer says (REMOTE_ADDR, HTTPS...); list the proxies allowed to "
                "connect with --uwsgi-allow-from (e.g. --uwsgi-allow-from 10.0.0.5), or bind "
                "127.0.0.1 or a unix socket"
            )


def markdown_table() -> str:
    """The README's option table, made from ``OPTIONS`` (a test keeps the
    README's copy current: ``python python/rwsgi/options.py`` prints it)."""

    def flags(option: Option) -> str:
        names = [option.cli + (f" {option.metavar}" if option.metavar else "")]
        names += ["--" + alias.replace("_", "-") for alias in option.aliases]
        if option.negation is not None:
            names += ["--" + name.replace("_", "-") for name in option.negation[0]]
        return ", ".join(f"`{name}`" for name in names)

    def default(option: Option) -> str:
        value = option.default
        if value in (None, []):
            return "—"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return f"{value:,}" if isinstance(value, int) else str(value)

    def meaning(option: Option) -> str:
        return option.help.replace("|", "\\|")

    def ini(option: Option) -> str:
        return ", ".join(f"`{key}`" for key in option.ini) or "—"

    rows = ["| option | default | meaning | uwsgi.ini |", "|---|---|---|---|"]
    rows += [
        f"| {flags(option)} | {default(option)} | {meaning(option)} | {ini(option)} |"
        for option in OPTIONS
    ]
    return "\n".join(rows) + "\n"


def _rewrite_readme(path: str) -> None:
    """Put the current table between the README's options-table markers."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    begin = text.index("-->\n", text.index("<!-- options table:")) + 4
    end = text.index("<!-- end of options table -->")
    with open(path, "w", encoding="utf-8") as file:
        file.write(text[:begin] + markdown_table() + text[end:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:]:  # python python/rwsgi/options.py README.md
        _rewrite_readme(sys.argv[1])
    else:
        print(markdown_table(), end="")
