"""Read an existing uWSGI ini file as rwsgi options (``rwsgi --ini FILE[:SECTION]``).

uWSGI's own dialect, not configparser's: ``key = value`` lines, ``#``/``;``
comments (``#`` also after a value, behind whitespace), repeated keys as lists,
``%(key)`` interpolation, the magic variables ``%d %n %c %p %s %k %h %%`` and
``$(ENV)``. Each uWSGI key maps through ``_KEYS`` onto an rwsgi option (the
value converted with ``Option.from_text``), the app spec, a start-up note, or
an error; merging with the command line and applying ``env`` is left to the
CLI. The logging keys: ``logto`` is ``--log-file``, ``disable-logging`` is
``--disable-access-log``, ``logformat``/``log-format`` are templates read as
written, and a file without ``disable-logging`` logs every request, as uWSGI does.
Errors name the file, the line and the key.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from rwsgi.options import OPTIONS, OptionError, text_bool

__all__ = ["IniConfig", "IniError", "read_ini", "split_spec"]

_BY_NAME = {option.name: option for option in OPTIONS}
_TOKEN = re.compile(r"%\(([^)]*)\)|%(.)|\$\(([^)]*)\)")
_MATCH_ALL = (".*", "^.*$", ".+", "^.+$", "(.*)")
# uWSGI's request-log templates: their %(name) are log variables, not ini
# keys, so they are read as written (uWSGI does not expand them either).
_RAW_KEYS = frozenset(("logformat", "log-format"))
# uWSGI logs every request unless told not to; rwsgi's stand-in for its default line.
UWSGI_LOG_FORMAT = (
    "[pid: %(pid)|app: 0|req: -/-] %(addr) (%(user)) [%(ctime)] %(method) %(uri) "
    "=> generated %(size) bytes in %(msecs) msecs (%(proto) %(status))"
)


class IniError(OptionError):
    """An ini file rwsgi cannot follow; the message names the file, line and key."""


class IniConfig:
    """What an ini section asks of rwsgi, for the CLI to merge under its flags."""

    def __init__(self, path: str, section: str) -> None:
        self.path = path
        self.section = section
        self.options: dict[str, object] = {}
        """Option name -> value as ``Option.from_text`` gave it (lists for repeatable ones)."""
        self.origins: dict[str, str] = {}
        """Option name (and ``app``) -> ``FILE:LINE`` of the line that set it last."""
        self.app: str | None = None
        """``MODULE:CALLABLE`` from ``module``/``callable``/``wsgi-file``, if any."""
        self.env: list[tuple[str, str]] = []
        """``env = KEY=VALUE`` pairs, to set in the master before the app is loaded."""
        self.defaults: dict[str, object] = {}
        """Options uWSGI's behaviour implies for this file (every request logged
        when it has no ``disable-logging``): under everything else, even rwsgi's
        own config files and environment."""
        self.notes: list[str] = []
        """One start-up line each: ``FILE:LINE: message``."""


class _Line:
    __slots__ = ("key", "lineno", "raw")

    def __init__(self, key: str, raw: str, lineno: int) -> None:
        self.key, self.raw, self.lineno = key, raw, lineno


class _Reader:
    """One section being read: its raw lines, the expansion and the result."""

    def __init__(self, path: str, section: str, lenient: bool) -> None:
        self.path = os.path.abspath(path)
        self.lenient = lenient
        self.lines: list[_Line] = []
        self.last: dict[str, _Line] = {}
        self.referenced: set[str] = set()
        self.result = IniConfig(path, section)
        self.module: str | None = None
        self.callable: str | None = None
        self.wsgi_file: tuple[str, _Line] | None = None

    def error(self, line: _Line, message: str) -> IniError:
        return IniError(f"{self.result.path}:{line.lineno}: {line.key}: {message}")

    def note(self, line: _Line, message: str) -> None:
        self.result.notes.append(f"{self.result.path}:{line.lineno}: {line.key}: {message}")

    def magic(self, char: str) -> str | None:
        folder = os.path.dirname(self.path)
        name = os.path.basename(self.path)
        return {
            "d": folder + "/",
            "p": self.path,
            "s": name,
            "n": os.path.splitext(name)[0],
            "c": os.path.basename(folder),
            "k": str(os.cpu_count() or 1),
            "h": os.uname().nodename,
            "%": "%",
        }.get(char)

    def expand(self, line: _Line, text: str, stack: tuple[str, ...] = ()) -> str:
        def replace(match: re.Match[str]) -> str:
            key, char, env = match.groups()
            if char is not None:
                value = self.magic(char)
                if value is None:
                    raise self.error(line, f"unknown magic variable %{char} (write %% for a %)")
                return value
            if env is not None:
                if env not in os.environ:
                    raise self.error(line, f"$({env}): the environment variable {env} is not set")
                return os.environ[env]
            if key in stack:
                cycle = " -> ".join((*stack, key))
                raise self.error(line, f"%({key}) refers to itself ({cycle})")
            source = self.last.get(key)
            self.referenced.add(key)
            if source is None:
                raise self.error(line, f"%({key}): no key {key!r} in [{self.result.section}]")
            return self.expand(line, source.raw, (*stack, key))

        return _TOKEN.sub(replace, text)

    def read(self) -> None:
        values = [
            line.raw if line.key in _RAW_KEYS else self.expand(line, line.raw, (line.key,))
            for line in self.lines
        ]
        for line, value in zip(self.lines, values, strict=True):
            handler = _KEYS.get(line.key)
            if handler is not None:
                handler(self, line, value)
            elif line.key in self.referenced:
                pass  # a variable of the file's own, as uWSGI allows: project=mysite
            elif self.lenient:
                self.note(line, "unknown uWSGI key, skipped (--ini-lenient)")
            else:
                raise self.error(line, "unknown uWSGI key (--ini-lenient skips unknown keys)")

    def set(self, line: _Line, name: str, text: str) -> None:
        option = _BY_NAME[name]
        try:
            value = option.from_text(text)
            if name != "static_map":  # its folders are resolved under chdir at the end
                # Checked here too so that a bad value names its line, not a flag.
                option.check(name, [value] if option.repeatable else value)
        except (OptionError, TypeError) as error:
            raise self.error(line, str(error)) from None
        self.result.origins[name] = f"{self.result.path}:{line.lineno}"
        if option.repeatable:
            current = self.result.options.setdefault(name, [])
            assert isinstance(current, list)
            current.append(value)
        else:
            self.result.options[name] = value

    def finish(self) -> IniConfig:
        result = self.result
        if self.wsgi_file is not None:
            path, line = self.wsgi_file
            chdir = result.options.get("chdir")
            if not os.path.isabs(path) and isinstance(chdir, str):
                path = os.path.join(chdir, path)
            path = os.path.abspath(path)
            if not os.path.isfile(path):
                raise self.error(line, f"{path!r} is not a file")
            folder, name = os.path.split(path)
            pythonpath = result.options.setdefault("pythonpath", [])
            result.origins.setdefault("pythonpath", f"{result.path}:{line.lineno}")
            assert isinstance(pythonpath, list)
            pythonpath.insert(0, folder)
            result.app = f"{os.path.splitext(name)[0]}:{self.callable or 'application'}"
        elif self.module is not None:
            module = self.module
            if ":" not in module:
                module += ":" + (self.callable or "application")
            result.app = module
        if "disable_access_log" not in result.options and "access_log" not in result.options:
            # uWSGI logs every request to its log unless disable-logging says not to.
            result.defaults["access_log"] = "stderr"
            if "access_log_format" not in result.options:
                result.defaults["access_log_format"] = UWSGI_LOG_FORMAT
            result.notes.append(
                f"{result.path}: no disable-logging: every request is logged to the server "
                "log as uWSGI does (--disable-access-log or disable-logging = true turns it off)"
            )
        chdir = result.options.get("chdir")
        if isinstance(chdir, str) and "static_map" in result.options:
            # uWSGI resolves a relative static folder after its chdir; rwsgi before it.
            maps = result.options["static_map"]
            assert isinstance(maps, list)
            result.options["static_map"] = [_under(chdir, entry) for entry in maps]
        return result


def _under(chdir: str, entry: str) -> str:
    prefix, sep, folder = entry.partition("=")
    return entry if not sep or os.path.isabs(folder) else f"{prefix}={os.path.join(chdir, folder)}"


Handler = Callable[[_Reader, _Line, str], None]


def _to(name: str) -> Handler:
    return lambda reader, line, value: reader.set(line, name, value)


def _is_true(reader: _Reader, line: _Line, value: str) -> bool:
    try:
        return value.strip() == "" or text_bool(value)
    except ValueError as error:
        raise reader.error(line, str(error)) from None


def _accept(reader: _Reader, line: _Line, value: str) -> None:
    """rwsgi always behaves this way: nothing to say."""


def _note(message: str) -> Handler:
    return lambda reader, line, value: reader.note(line, message)


_MEANINGLESS = "accepted, means nothing to rwsgi"
_UNHONOURED = "cannot be honoured by rwsgi, ignored: "


def _module(reader: _Reader, line: _Line, value: str) -> None:
    reader.module = value.strip()
    reader.result.origins["app"] = f"{reader.result.path}:{line.lineno}"


def _callable(reader: _Reader, line: _Line, value: str) -> None:
    reader.callable = value.strip()


def _wsgi_file(reader: _Reader, line: _Line, value: str) -> None:
    reader.wsgi_file = (value.strip(), line)
    reader.result.origins["app"] = f"{reader.result.path}:{line.lineno}"


def _chmod(reader: _Reader, line: _Line, value: str) -> None:
    reader.set(line, "chmod_socket", value.strip() or _BY_NAME["chmod_socket"].bare or "666")


def _env(reader: _Reader, line: _Line, value: str) -> None:
    key, sep, text = value.partition("=")
    if not sep or not key.strip():
        raise reader.error(line, f"{value!r} is not KEY=VALUE")
    reader.result.env.append((key.strip(), text))


def _home(reader: _Reader, line: _Line, value: str) -> None:
    if os.path.realpath(value) != os.path.realpath(sys.prefix):
        raise reader.error(
            line,
            f"{value!r} is not the virtualenv of this rwsgi ({sys.prefix}); run that "
            f"virtualenv's own: {os.path.join(value, 'bin', 'rwsgi')} --ini {reader.result.path}",
        )


def _logto(reader: _Reader, line: _Line, value: str) -> None:
    reader.set(line, "log_file", value.strip())
    path = reader.result.options["log_file"]
    reader.note(line, f"rwsgi's log (master and workers) goes to {path} (--log-file)")


def _disable_logging(reader: _Reader, line: _Line, value: str) -> None:
    reader.result.options["disable_access_log"] = _is_true(reader, line, value)
    reader.result.origins["disable_access_log"] = f"{reader.result.path}:{line.lineno}"


def _expires(reader: _Reader, line: _Line, value: str) -> None:
    parts = value.split()
    if len(parts) == 2 and parts[0] in _MATCH_ALL:
        parts = parts[1:]
    if len(parts) != 1 or not parts[0].isdigit():
        raise reader.error(
            line,
            f"{value!r}: rwsgi has no per-pattern expiry; --static-expires SECONDS applies "
            "to every static file (write static-expires = SECONDS, or .* SECONDS)",
        )
    reader.set(line, "static_expires", parts[0])


def _lazy(reader: _Reader, line: _Line, value: str) -> None:
    if _is_true(reader, line, value):
        reader.result.options["preload"] = False
        reader.result.origins["preload"] = f"{reader.result.path}:{line.lineno}"


# Keys that set one option as they are come from the option table's ``ini``
# fields; the rest need a handler of their own.
_KEYS: dict[str, Handler] = {key: _to(option.name) for option in OPTIONS for key in option.ini}
_KEYS |= {
    "module": _module,
    "wsgi": _module,
    "callable": _callable,
    "wsgi-file": _wsgi_file,
    "file": _wsgi_file,
    "env": _env,
    "chmod-socket": _chmod,
    "master": _accept,
    "lazy-apps": _lazy,
    "lazy": _lazy,
    "static-expires": _expires,
    "static-expires-uri": _expires,
    "vacuum": _accept,
    "die-on-term": _accept,
    "disable-logging": _disable_logging,
    "logto": _logto,
    "home": _home,
    "virtualenv": _home,
    "venv": _home,
    "buffer-size": _note("rwsgi accepts request heads up to 64 KiB, whatever this says"),
    "reload-on-as": _note(_UNHONOURED + "address space is not memory use; use --reload-on-rss"),
    "evil-reload-on-as": _note(_UNHONOURED + "use --reload-on-rss"),
    "evil-reload-on-rss": _note(_UNHONOURED + "use reload-on-rss (--reload-on-rss)"),
    "idle": _note(_UNHONOURED + "workers stay up; socket activation (systemd) starts on demand"),
    "emperor": _note(_UNHONOURED + "run one rwsgi per app (a systemd unit each)"),
    "add-header": _note(_UNHONOURED + "set the header in the app or in nginx (add_header)"),
    "daemonize": _note(_UNHONOURED + "rwsgi stays in the foreground: run it under systemd"),
}
for _key in ("cheaper", "cheaper-initial", "cheaper-step", "cheaper-algo", "cheaper-overload"):
    _KEYS[_key] = _note(_UNHONOURED + "the worker count is fixed; SIGTTIN/SIGTTOU add/remove one")
for _key in (
    "enable-threads", "single-interpreter", "thunder-lock", "need-app", "strict",
    "memory-report", "auto-procname", "procname", "procname-prefix", "procname-prefix-spaced",
    "procname-append", "so-keepalive", "tcp-nodelay", "offload-threads", "http-keepalive",
    "http-auto-chunked", "harakiri-verbose", "log-date", "logdate", "log-4xx", "log-5xx",
    "log-slow", "log-x-forwarded-for", "log-master", "plugins", "plugin", "need-plugin",
    "max-fd", "cpu-affinity", "ignore-sigpipe", "ignore-write-errors", "disable-write-exception",
    "wsgi-disable-file-wrapper", "py-call-osafterfork", "socket-timeout", "http-timeout",
    "uwsgi-socket-timeout", "close-on-exec", "no-orphans", "hook-master-start", "lazy-apps-fork",
    "enable-metrics", "catch-exceptions", "reuse-port", "post-buffering-bufsize",
):  # fmt: skip
    _KEYS[_key] = _note(_MEANINGLESS)


def split_spec(spec: str) -> tuple[str, str]:
    """``FILE[:SECTION]`` as (file, section); a path that exists whole keeps its colon."""
    path, sep, section = spec.rpartition(":")
    if not sep or "/" in section or not section or os.path.exists(spec):
        return spec, "uwsgi"
    return path, section


def read_ini(path: str, section: str = "uwsgi", lenient: bool = False) -> IniConfig:
    """The ``[section]`` of the uWSGI ini file at ``path`` as rwsgi options.

    Raises ``IniError`` naming the file, line and key for what rwsgi cannot
    follow; with ``lenient`` an unknown key is a note instead.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise IniError(f"{path}: cannot read it: {error}") from None
    reader = _Reader(path, section, lenient)
    current: str | None = None
    found = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            found = found or current == section
            continue
        if current != section:
            continue
        key, _, value = stripped.partition("=")
        comment = re.search(r"\s#", value)
        if comment:
            value = value[: comment.start()]
        line = _Line(key.strip(), value.strip(), lineno)
        reader.lines.append(line)
        reader.last[line.key] = line
    if not found:
        raise IniError(f"{path}: no [{section}] section")
    reader.read()
    return reader.finish()
