"""The access log (``--access-log``): one line per answered request, written by
the server's I/O side after the response, on every kind of listener, in the
common, combined and runserver layouts; a destination that does not keep up
costs lines, never responses."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import sys
import time
from pathlib import Path

import pytest
from conftest import ServerFactory, short_tmpdir, wait_until
from support.process import Server
from support.transports import LISTENER_KINDS, start_on_every_listener
from support.uwsgi import request_vars, uwsgi_packet

STAMP = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"


def lines_of(path: Path, count: int) -> list[str]:
    """The log's lines once it holds ``count`` (it is flushed within a second)."""
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= count, 10)
    return path.read_text().splitlines()


def test_one_common_line_per_request_on_every_listener(start_server: ServerFactory) -> None:
    log = Path(short_tmpdir()) / "access.log"
    server, _ = start_on_every_listener(start_server, "apps.core", "--access-log", str(log))
    for kind in LISTENER_KINDS.values():
        response = kind(server).request("GET", f"/echo?via={kind.name}")
        assert response.status == 200
    lines = lines_of(log, 3)
    assert len(lines) == 3, lines
    # Lines are written after their responses, so not necessarily in request order.
    for kind in LISTENER_KINDS.values():
        [line] = [line for line in lines if f"via={kind.name} " in line]
        peer = "127.0.0.1" if kind.name == "direct" else r"(-|127\.0\.0\.1)"
        pattern = rf'^{peer} - - \[{STAMP}\] "GET /echo\?via={kind.name} HTTP/1\.1" 200 \d+$'
        assert re.match(pattern, line), (kind.name, line)


def test_combined_adds_referer_and_an_escaped_user_agent(start_server: ServerFactory) -> None:
    log = Path(short_tmpdir()) / "access.log"
    server, _ = start_on_every_listener(
        start_server, "apps.core", "--access-log", str(log), "--access-log-format", "combined"
    )
    direct = LISTENER_KINDS["direct"](server)
    direct.request("GET", "/echo", headers=[("Referer", "http://a.test/"), ("User-Agent", 'x"y')])
    direct.request("GET", "/echo")
    # Each line is written after its response is sent: the client may see the
    # first answer, and send the second request, before that line is written.
    lines = sorted(lines_of(log, 2), key=lambda line: "a.test" not in line)
    assert lines[0].endswith(' "http://a.test/" "x\\"y"'), lines
    assert lines[1].endswith(' "-" "-"'), lines


def test_runserver_lines_on_standard_output(start_server: ServerFactory) -> None:
    server = start_server.mixed(
        "apps.core",
        "--http",
        "127.0.0.1:0",
        "--access-log",
        "-",
        "--access-log-format",
        "runserver",
    )
    direct = LISTENER_KINDS["direct"](server)
    assert direct.request("HEAD", "/echo?x=1").status == 200
    assert direct.request("GET", "/missing-route").status in (200, 404)
    wait_until(lambda: len(server.stdout().splitlines()) >= 2, 10)
    first = server.stdout().splitlines()[0]
    assert re.match(
        r'^\[\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d\] "HEAD /echo\?x=1 HTTP/1\.1" 200 \d+$', first
    ), first


def test_off_by_default(start_server: ServerFactory) -> None:
    server = start_server.mixed("apps.core", "--http", "127.0.0.1:0")
    direct = LISTENER_KINDS["direct"](server)
    assert direct.request("GET", "/echo").status == 200
    server.stop()
    assert server.stdout() == ""


def test_a_destination_that_never_reads_costs_lines_not_responses(
    start_server: ServerFactory,
) -> None:
    """A fifo whose reader never reads: the writer thread blocks once the pipe is
    full, batches queue and are then dropped with a warning; every request is
    still answered."""
    fifo = Path(short_tmpdir()) / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    try:
        server = start_server.mixed("apps.core", "--http", "127.0.0.1:0", "--access-log", str(fifo))
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        direct = LISTENER_KINDS["direct"](server)
        padding = "p" * 4000
        # ~12 MB of lines: far past the pipe (64 KiB) and the writer's queue.
        with direct.connect() as conn:
            for index in range(3000):
                conn.send(direct.encode("GET", f"/echo?{index}&{padding}"))
                assert conn.response("GET").status == 200
        server.wait_for_log("access log: its destination does not keep up", timeout=10)
    finally:
        os.close(reader)


@pytest.mark.parametrize("value", ["/no/such/folder/access.log"])
def test_a_log_in_a_missing_folder_is_refused_at_start(value: str) -> None:
    from support.process import run_to_exit

    code, err = run_to_exit("apps.core", "--http", "127.0.0.1:0", "--access-log", value)
    assert code != 0
    assert "--access-log" in err and "does not exist" in err


# -- json and templates (issue 16) ------------------------------------------


def json_lines(path: Path, count: int) -> list[dict]:
    """The log's lines parsed with json.loads, once it holds ``count``."""
    return [json.loads(line) for line in lines_of(path, count)]


def test_json_lines_carry_every_field_over_http_and_uwsgi(start_server: ServerFactory) -> None:
    log = Path(short_tmpdir()) / "access.log"
    server, _ = start_on_every_listener(
        start_server, "apps.logging_app", "--access-log", str(log), "--access-log-format", "json"
    )
    direct = LISTENER_KINDS["direct"](server)
    response = direct.request(
        "GET",
        "/hello?x=%22q%22",
        headers=[("User-Agent", 'ua "x" \\ y'), ("Referer", "http://r.test/")],
    )
    assert response.status == 200
    # A hand-written uwsgi packet, as nginx's uwsgi_pass sends it.
    vars_ = request_vars("GET", "/via-uwsgi", "a=1", REMOTE_ADDR="10.1.2.3")
    vars_["HTTP_HOST"] = "proxied.test"
    answer = send_uwsgi(server.unix("uwsgi"), uwsgi_packet(vars_))
    assert answer.startswith(b"HTTP/1.1 200")
    lines = json_lines(log, 2)
    by_path = {line["path"]: line for line in lines}
    http_line, uwsgi_line = by_path["/hello"], by_path["/via-uwsgi"]
    assert http_line["method"] == "GET"
    assert http_line["uri"] == "/hello?x=%22q%22"
    assert http_line["query"] == "x=%22q%22"
    assert http_line["status"] == 200 and http_line["size"] == 5
    assert http_line["proto"] == "HTTP/1.1" and http_line["protocol"] == "http"
    assert http_line["uagent"] == 'ua "x" \\ y'  # quotes and backslash survive json.loads
    assert http_line["referer"] == "http://r.test/"
    assert http_line["addr"] == "127.0.0.1" and http_line["user"] == "-"
    assert http_line["micros"] > 0 and http_line["msecs"] == http_line["micros"] // 1000
    assert http_line["wid"] == 1 and http_line["pid"] in server.worker_pids.values()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", http_line["time"])
    assert uwsgi_line["protocol"] == "uwsgi" and uwsgi_line["query"] == "a=1"
    assert uwsgi_line["addr"] == "10.1.2.3" and uwsgi_line["host"] == "proxied.test"
    assert uwsgi_line["status"] == 200


def send_uwsgi(path: str, packet: bytes) -> bytes:
    """Send one uwsgi packet on a unix socket; the whole answer (close-delimited)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(packet)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


EVERY_PLACEHOLDER = (
    "addr=%(addr) user=%(user) ltime=[%(ltime)] time=%(time) ctime=[%(ctime)] iso=%(iso) "
    "method=%(method) uri=%(uri) path=%(path) query=%(query) proto=%(proto) status=%(status) "
    "size=%(size) msecs=%(msecs) micros=%(micros) referer=%(referer) uagent=%(uagent) "
    "host=%(host) wid=%(wid) pid=%(pid) protocol=%(protocol) var=%(var.HTTP_X_REQUEST_ID) "
    "header=%(header.X-Request-Id) response=%(response.x-answer) missing=%(header.X-None) |"
)


def test_a_template_fills_every_placeholder(start_server: ServerFactory) -> None:
    log = Path(short_tmpdir()) / "access.log"
    server = start_server.mixed(
        "apps.logging_app",
        "--http",
        "127.0.0.1:0",
        "--access-log",
        str(log),
        "--access-log-format",
        EVERY_PLACEHOLDER,
    )
    direct = LISTENER_KINDS["direct"](server)
    headers = [("X-Request-Id", 'id-"7"'), ("User-Agent", "tester")]
    assert direct.request("GET", "/hello?k=v", headers=headers).status == 200
    [line] = lines_of(log, 1)
    fields = dict(re.findall(r"(\w+)=(\[[^]]*\]|\S*)", line))
    [worker_pid] = server.worker_pids.values()
    assert fields["addr"] == "127.0.0.1" and fields["user"] == "-"
    assert re.match(r"^\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]$", fields["ltime"])
    assert abs(int(fields["time"]) - time.time()) < 3600
    assert re.match(
        r"^\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\]$", fields["ctime"]
    )
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", fields["iso"])
    assert fields["method"] == "GET" and fields["uri"] == "/hello?k=v"
    assert fields["path"] == "/hello" and fields["query"] == "k=v"
    assert fields["proto"] == "HTTP/1.1" and fields["status"] == "200" and fields["size"] == "5"
    assert int(fields["micros"]) > 0 and int(fields["msecs"]) == int(fields["micros"]) // 1000
    assert fields["referer"] == "-" and fields["uagent"] == "tester"
    assert fields["host"].startswith("127.0.0.1:") or fields["host"] == "core.test"
    assert fields["wid"] == "1" and fields["pid"] == str(worker_pid)
    assert fields["protocol"] == "http"
    # Client text is escaped as in the other layouts.
    assert fields["var"] == fields["header"] == 'id-\\"7\\"'
    assert fields["response"] == "42" and fields["missing"] == "-"
    assert line.endswith(" |")


def test_an_unknown_placeholder_stops_the_start_naming_it() -> None:
    from support.process import run_to_exit

    code, err = run_to_exit(
        "apps.core",
        "--http",
        "127.0.0.1:0",
        "--access-log",
        "-",
        "--access-log-format",
        "%(method) %(nonsense)",
    )
    assert code != 0
    assert "%(nonsense)" in err and "access_log_format" in err.replace("-", "_"), err


def test_disable_access_log_wins_over_access_log(start_server: ServerFactory) -> None:
    server = start_server.mixed(
        "apps.core", "--http", "127.0.0.1:0", "--access-log", "-", "--disable-access-log"
    )
    assert LISTENER_KINDS["direct"](server).request("GET", "/echo").status == 200
    server.stop()  # the log is flushed at exit: nothing was written
    assert server.stdout() == ""


# -- uWSGI ini files: logging on unless disable-logging -----------------------

UWSGI_LINE = (
    r"\[pid: \d+\|app: 0\|req: -/-\] 127\.0\.0\.1 \(-\) \[[A-Z][a-z]{2} [^]]+\] "
    r"GET /from-ini\?n=1 => generated 5 bytes in \d+ msecs \(HTTP/1\.1 200\)"
)


def ini_server(start_server: ServerFactory, text: str, *flags: str) -> Server:
    path = Path(short_tmpdir()) / "app.ini"
    path.write_text(f"[uwsgi]\nhttp = 127.0.0.1:0\nmodule = apps.logging_app\n{text}")
    return start_server.argv([sys.executable, "-m", "rwsgi", "--ini", str(path), *flags])


def test_an_ini_file_logs_every_request_as_uwsgi_does(start_server: ServerFactory) -> None:
    server = ini_server(start_server, "")
    assert "no disable-logging: every request is logged" in server.logs()
    assert server.get("/from-ini?n=1").status == 200
    server.wait_for_log(UWSGI_LINE)


def test_ini_disable_logging_and_the_flag_turn_it_off(start_server: ServerFactory) -> None:
    for text, flags in (("disable-logging = true\n", ()), ("", ("--disable-access-log",))):
        server = ini_server(start_server, text, *flags)
        assert server.get("/from-ini?n=1").status == 200
        server.stop()
        assert not re.search(UWSGI_LINE, server.logs()), server.logs()


def test_ini_logformat_is_read_without_interpolation(start_server: ServerFactory) -> None:
    server = ini_server(start_server, "logformat = %(method) %(uri) -> %(status)\n")
    assert server.get("/from-ini?n=1").status == 200
    server.wait_for_log(r"^GET /from-ini\?n=1 -> 200$")
