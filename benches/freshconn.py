"""Fresh-connection probes: while wrk keeps its connections busy, how long
does a new client wait for its first answer?

``FreshProbe`` is a thread that opens a new TCP connection every 0.2 s,
sends one request on it (with ``Connection: close``) and times, from the
``connect``, the first byte of the answer and the whole answer. A probe with
no complete answer within 5 s is a timeout. The probes overlap (a slow one
does not delay the next), all driven by one epoll loop, so a stalled server
gets the same number of probes as a quick one.
"""

from __future__ import annotations

import errno
import selectors
import socket
import statistics
import threading
import time

from servers import HOST


class _Probe:
    def __init__(self, request: bytes, now: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.request = request
        self.start = now
        self.first: float | None = None
        self.buf = b""

    def answer(self) -> tuple[int, bytes] | None:
        """(status, body) once the whole answer is in ``buf``, else None."""
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            return (0, body)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
                return (status, body[:length]) if len(body) >= length else None
        return None  # no Content-Length: the answer ends when the server closes


class FreshProbe(threading.Thread):
    """Probe ``port`` every ``interval`` s until ``stop()``; see the module doc."""

    def __init__(
        self,
        port: int,
        request: bytes,
        expected: bytes,
        interval: float = 0.2,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.request, self.expected = port, request, expected
        self.interval, self.timeout = interval, timeout
        self.first_ms: list[float] = []
        self.full_ms: list[float] = []
        self.timeouts = 0
        self.errors: dict[str, int] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        live: set[_Probe] = set()
        next_start = time.monotonic()
        try:
            while live or not self._stopping.is_set():
                now = time.monotonic()
                if not self._stopping.is_set() and now >= next_start:
                    self._open(selector, live, now)
                    next_start += self.interval
                for key, _ in selector.select(max(0.0, min(next_start - now, 0.05))):
                    self._step(selector, live, key.data, time.monotonic())
                now = time.monotonic()
                for probe in [p for p in live if now - p.start > self.timeout]:
                    self.timeouts += 1
                    self._close(selector, live, probe)
        finally:
            for probe in list(live):
                self._close(selector, live, probe)
            selector.close()

    def _open(self, selector: selectors.BaseSelector, live: set[_Probe], now: float) -> None:
        probe = _Probe(self.request, now)
        code = probe.sock.connect_ex((HOST, self.port))
        if code not in (0, errno.EINPROGRESS):
            probe.sock.close()
            self._error(f"connect: {errno.errorcode.get(code, code)}")
            return
        live.add(probe)
        selector.register(probe.sock, selectors.EVENT_WRITE, probe)

    def _step(
        self, selector: selectors.BaseSelector, live: set[_Probe], probe: _Probe, now: float
    ) -> None:
        try:
            if probe.request:  # still connecting or sending
                code = probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
                sent = probe.sock.send(probe.request)
                probe.request = probe.request[sent:]
                if not probe.request:
                    selector.modify(probe.sock, selectors.EVENT_READ, probe)
                return
            data = probe.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self._error(error.strerror or type(error).__name__)
            self._close(selector, live, probe)
            return
        if data and probe.first is None:
            probe.first = now
        probe.buf += data
        answer = probe.answer()
        if answer is None and data:
            return
        if answer is None:  # closed by the server
            if probe.first is None:
                self._error("closed without an answer")
                self._close(selector, live, probe)
                return
            head = probe.buf.partition(b"\r\n\r\n")
            status = int(head[0].split()[1]) if len(head[0].split()) > 1 else 0
            answer = (status, head[2])
        status, body = answer
        assert probe.first is not None
        if status != 200 or body != self.expected:
            self._error(f"status {status}" if status != 200 else "wrong body")
        else:
            self.first_ms.append((probe.first - probe.start) * 1000)
            self.full_ms.append((now - probe.start) * 1000)
        self._close(selector, live, probe)

    def _error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @staticmethod
    def _close(selector: selectors.BaseSelector, live: set[_Probe], probe: _Probe) -> None:
        live.discard(probe)
        try:
            selector.unregister(probe.sock)
        except (KeyError, ValueError):
            pass
        probe.sock.close()

    def stop(self) -> dict:
        """Open no more probes, let the open ones finish (at most ``timeout``
        s), and return the figures."""
        self._stopping.set()
        self.join(self.timeout + 5)
        return {
            "count": len(self.first_ms) + self.timeouts + sum(self.errors.values()),
            "first_ms": [round(x, 2) for x in self.first_ms],
            "full_ms": [round(x, 2) for x in self.full_ms],
            "timeouts": self.timeouts,
            "errors": dict(self.errors),
        }


def summary(probes: list[dict]) -> dict | None:
    """Probes of several runs pooled: count, p50 and max of the first byte,
    max of the full answer, timeouts and errors."""
    probes = [p for p in probes if p]
    if not probes:
        return None
    first = [x for p in probes for x in p["first_ms"]]
    full = [x for p in probes for x in p["full_ms"]]
    errors: dict[str, int] = {}
    for p in probes:
        for kind, n in p["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "count": sum(p["count"] for p in probes),
        "p50_ms": statistics.median(first) if first else None,
        "max_ms": max(first) if first else None,
        "full_max_ms": max(full) if full else None,
        "timeouts": sum(p["timeouts"] for p in probes),
        "errors": errors,
    }
