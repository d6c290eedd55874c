"""Idle keep-alive connections held open against a server, for the
``idle_keepalive`` scenario (``idle_runs``): what each costs the server in
memory, and whether serving others slows down while they are held.

``HeldConnections.open`` connects ``count`` sockets (at most ``in_flight`` at
a time still waiting for their answer, so the listen queue is not flooded),
sends one GET on each, reads the whole answer and keeps the socket open,
idle. It gives up at a deadline; what did not get its answer by then is
closed and counted. ``still_open`` counts the held sockets the server has
not closed since (a keep-alive idle limit closes them). Closing sends a
reset (``SO_LINGER`` 0), so no TIME_WAIT is left to use up local ports.
"""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import statistics
import struct
import time
from collections.abc import Callable

from procstat import rss_bytes, session_pids
from servers import HOST

_LINGER_RESET = struct.pack("ii", 1, 0)


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE (the servers and wrk inherit it) to
    at least ``wanted`` if the hard limit allows (or root can lift it); the
    soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        return wanted
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


class HeldConnections:
    def __init__(self, port: int) -> None:
        self.port = port
        self.held: list[socket.socket] = []
        self.failed: dict[str, int] = {}
        self.open_s = 0.0

    def open(self, count: int, deadline_s: float, in_flight: int = 256) -> int:
        """Open ``count`` connections, one answered GET each; how many are held."""
        request = f"GET / HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()
        selector = selectors.DefaultSelector()
        pending: dict[socket.socket, bytes] = {}  # socket -> what it has read
        started = 0
        begin = time.monotonic()
        deadline = begin + deadline_s
        try:
            while (started < count or pending) and time.monotonic() < deadline:
                while started < count and len(pending) < in_flight:
                    started += 1
                    sock = self._connect()
                    if sock is not None:
                        pending[sock] = b""
                        selector.register(sock, selectors.EVENT_WRITE, request)
                for key, _ in selector.select(0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    self._step(selector, pending, sock, key.data)
        finally:
            for sock in pending:
                self._fail("no answer before the deadline")
                selector.unregister(sock)
                self._reset(sock)
            self._fail_n("not opened before the deadline", count - started)
            selector.close()
            self.open_s = time.monotonic() - begin
        return len(self.held)

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((HOST, self.port))
        if code in (0, errno.EINPROGRESS):
            return sock
        sock.close()
        self._fail(f"connect: {errno.errorcode.get(code, code)}")
        return None

    def _step(
        self,
        selector: selectors.BaseSelector,
        pending: dict[socket.socket, bytes],
        sock: socket.socket,
        request: bytes | None,
    ) -> None:
        try:
            if request is not None:  # connected (or failed): send the GET
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
                sock.sendall(request)  # tiny: fits an empty send buffer
                selector.modify(sock, selectors.EVENT_READ, None)
                return
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(error.strerror or type(error).__name__)
            selector.unregister(sock)
            del pending[sock]
            self._reset(sock)
            return
        buf = pending[sock] + data
        pending[sock] = buf
        head, sep, body = buf.partition(b"\r\n\r\n")
        done = False
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            done = len(body) >= length
        if not data or done:
            selector.unregister(sock)
            del pending[sock]
            if done and buf.split(b" ", 2)[1:2] == [b"200"]:
                self.held.append(sock)
            else:
                self._fail("closed without an answer" if not sep else "not a 200 answer")
                self._reset(sock)

    def still_open(self) -> int:
        """Held sockets the server has not closed (nothing readable: an idle
        keep-alive connection has nothing to say, a closed one reads EOF)."""
        open_now = 0
        for sock in self.held:
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                open_now += 1
                continue
            except OSError:
                continue
            if data:  # something unasked for; the connection is still up
                open_now += 1
        return open_now

    def close(self) -> None:
        for sock in self.held:
            self._reset(sock)
        self.held = []

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        sock.close()

    def _fail(self, why: str) -> None:
        self._fail_n(why, 1)

    def _fail_n(self, why: str, n: int) -> None:
        if n > 0:
            self.failed[why] = self.failed.get(why, 0) + n


def tree_rss(sid: int, samples: int = 5) -> int:
    """The session's summed RSS, the median of a few samples 0.1 s apart."""
    values = []
    for _ in range(samples):
        values.append(rss_bytes(session_pids(sid)))
        time.sleep(0.1)
    return int(statistics.median(values))


def idle_runs(
    sid: int, port: int, connections: int, hold_timeout: float, run_load: Callable[[], dict]
) -> dict:
    """idle_keepalive against the server of session ``sid``: ``run_load``
    (compare.py's measured hello run) alone, then ``connections`` idle
    keep-alive connections opened and held, their RSS cost, ``run_load`` while
    they are held, and alone again once they are closed. The load figures
    returned are the held run's; the rate alone is the mean of the runs before
    and after it, so a drift of the machine over the three runs does not pass
    for an effect of the held connections."""
    alone = run_load()
    rss0 = tree_rss(sid)
    held = HeldConnections(port)
    try:
        answered = held.open(connections, hold_timeout)
        time.sleep(1.0)  # let the workers finish registering them
        open_at_load = held.still_open()
        rss1 = tree_rss(sid)
        loaded = run_load()
        open_after = held.still_open()
    finally:
        held.close()
    time.sleep(0.5)  # the server reaps the closed connections
    after = run_load()
    alone_rps = (alone["rps"] + after["rps"]) / 2
    return {
        **loaded,
        "other_cores": max(alone["other_cores"], loaded["other_cores"], after["other_cores"]),
        "alone": {k: v for k, v in alone.items() if k != "processes"},
        "alone_after": {k: v for k, v in after.items() if k != "processes"},
        "alone_rps": alone_rps,
        "rps_ratio": loaded["rps"] / alone_rps if alone_rps else None,
        "held_target": connections,
        "held": answered,
        "held_failed": held.failed,
        "open_s": held.open_s,
        "open_at_load": open_at_load,
        "open_after": open_after,
        "rss_idle_mib": rss0 / 2**20,
        "rss_held_mib": rss1 / 2**20,
        "kib_per_conn": (rss1 - rss0) / 1024 / open_at_load if open_at_load else None,
    }
