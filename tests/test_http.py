"""HTTP/1.1 on the wire: keep-alive, pipelining, Connection: close, HTTP/1.0,
request-head limits (431), malformed requests (400), the header timeout and
listeners (several, IPv6). Raw sockets wherever the exact bytes matter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import IncompleteResponse, Server, read_response, read_until_closed, recorded_lines
from support.http import ipv6_loopback_works

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def record_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http") / "calls.txt"


@pytest.fixture(scope="module")
def server(start_module_server, record_file: Path) -> Server:
    return start_module_server(
        "apps.environ:application", threads=2, env={"RWSGI_TEST_RECORD": str(record_file)}
    )


app_calls = recorded_lines


def get(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: test", *extra, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def test_keep_alive_serves_several_requests_on_one_connection(server: Server) -> None:
    with server.connect() as sock, sock.makefile("rb") as rfile:
        ports = []
        for i in range(3):
            sock.sendall(get(f"/keepalive/{i}"))
            response = read_response(rfile)
            assert response.status == 200
            assert (response.header("connection") or "").lower() != "close"
            environ = response.json()["values"]
            assert environ["PATH_INFO"] == f"/keepalive/{i}"
            ports.append(environ["REMOTE_PORT"])
        assert ports == [str(sock.getsockname()[1])] * 3


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    requests = (
        get("/pipe/1")
        + b"POST /pipe/2 HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc"
        + get("/pipe/3")
        + b"HEAD /pipe/4 HTTP/1.1\r\nHost: test\r\n\r\n"
        + get("/pipe/5")
    )
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(requests)
        seen = []
        for method in ("GET", "POST", "GET", "HEAD", "GET"):
            response = read_response(rfile, method)
            assert response.status == 200
            if method == "HEAD":
                assert response.body == b""
                seen.append(("HEAD", None))
                continue
            environ = response.json()["values"]
            seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
            if method == "POST":
                assert environ["CONTENT_LENGTH"] == "3"
    assert seen == [
        ("GET", "/pipe/1"),
        ("POST", "/pipe/2"),
        ("GET", "/pipe/3"),
        ("HEAD", None),
        ("GET", "/pipe/5"),
    ]


def test_fifty_pipelined_requests_in_one_write(server: Server) -> None:
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(b"".join(get(f"/burst/{i}") for i in range(50)))
        paths = [read_response(rfile).json()["values"]["PATH_INFO"] for _ in range(50)]
    assert paths == [f"/burst/{i}" for i in range(50)]


def test_connection_close_is_honoured(server: Server) -> None:
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/close", "Connection: close"))
        response = read_response(rfile)
        assert response.status == 200
        assert response.json()["values"]["HTTP_CONNECTION"] == "close"
        assert rfile.read() == b"", "the server must close the connection after the response"


def test_http10_request_is_served_and_closed(server: Server) -> None:
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(b"GET /old?x=1 HTTP/1.0\r\n\r\n")
        response = read_response(rfile)
        assert response.status == 200
        assert response.version in ("HTTP/1.0", "HTTP/1.1")
        assert not response.chunked, "an HTTP/1.0 client cannot read chunked bodies"
        environ = response.json()["values"]
        assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert environ["PATH_INFO"] == "/old"
        assert environ["QUERY_STRING"] == "x=1"
        assert rfile.read() == b""


def test_absolute_form_request_target(server: Server) -> None:
    response = server.exchange(
        b"GET http://example.com/abs/path?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    assert response.status == 200
    environ = response.json()["values"]
    assert environ["PATH_INFO"] == "/abs/path"
    assert environ["QUERY_STRING"] == "q=1"


def test_request_head_just_under_64k_is_accepted(server: Server) -> None:
    response = server.exchange(get("/big-head-ok", "X-Big: " + "a" * 60000))
    assert response.status == 200
    assert len(response.json()["values"]["HTTP_X_BIG"]) == 60000


def test_request_head_over_64k_is_431(server: Server, record_file: Path) -> None:
    response = server.exchange(get("/big-head-431", "X-Big: " + "a" * (70 * 1024)))
    assert response.status == 431
    assert "/big-head-431" not in app_calls(record_file)
    assert server.get("/after-431").status == 200


def test_many_small_headers_over_64k_is_431(server: Server, record_file: Path) -> None:
    headers = [f"X-H{i}: " + "b" * 900 for i in range(80)]  # 80 fields, ~73 KiB
    response = server.exchange(get("/many-bytes-431", *headers))
    assert response.status == 431
    assert "/many-bytes-431" not in app_calls(record_file)


@pytest.mark.parametrize(("extra", "status"), [(99, 200), (101, 431)])
def test_header_field_count_limit(
    server: Server, record_file: Path, extra: int, status: int
) -> None:
    path = f"/fields-{extra}"
    headers = [f"X-Field-{i}: {i}" for i in range(extra)]  # plus Host
    response = server.exchange(get(path, *headers))
    assert response.status == status
    assert (path in app_calls(record_file)) == (status == 200)


MALFORMED = {
    "garbage": b"GARBAGE\r\n\r\n",
    "no-colon": b"GET /malformed/no-colon HTTP/1.1\r\nHost test\r\n\r\n",
    "space-in-target": b"GET /malformed/space in-target HTTP/1.1\r\nHost: test\r\n\r\n",
    "space-before-colon": b"GET /malformed/space-colon HTTP/1.1\r\nHost : test\r\n\r\n",
    "bad-content-length": (
        b"POST /malformed/bad-cl HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n"
    ),
    "conflicting-content-length": (
        b"POST /malformed/two-cl HTTP/1.1\r\nHost: test\r\n"
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
    "negative-content-length": (
        b"POST /malformed/neg-cl HTTP/1.1\r\nHost: test\r\nContent-Length: -1\r\n\r\n"
    ),
    "control-char-in-header": (
        b"GET /malformed/ctl HTTP/1.1\r\nHost: test\r\nX-Ctl: a\x00b\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_is_400_and_never_reaches_the_app(
    server: Server, record_file: Path, name: str
) -> None:
    response = server.exchange(MALFORMED[name])
    assert response.status == 400
    assert not [call for call in app_calls(record_file) if call.startswith("/malformed")]
    assert server.get("/after-malformed").status == 200


def test_bad_chunk_size_is_rejected_before_the_app(server: Server, record_file: Path) -> None:
    request = (
        b"POST /malformed/chunk HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"
    )
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(request)
        try:
            response = read_response(rfile, "POST")
        except IncompleteResponse:
            response = None  # closing the connection is an acceptable answer too
        except ConnectionResetError:
            response = None
    if response is not None:
        assert response.status == 400
    assert "/malformed/chunk" not in app_calls(record_file)
    assert server.get("/after-bad-chunk").status == 200


def test_header_timeout_closes_a_stalled_request_head(start_server) -> None:
    server = start_server(
        "apps.environ:application", "--header-timeout", "1", "--keepalive-timeout", "1"
    )
    with server.connect() as sock:
        sock.sendall(b"GET /stalled HTTP/1.1\r\nHost: test\r\n")
        began = time.monotonic()
        data = read_until_closed(sock, 30)
        elapsed = time.monotonic() - began
    assert elapsed > 0.5, f"closed after {elapsed:.2f} s, before --header-timeout 1"
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    # an idle keep-alive connection is closed by --keepalive-timeout
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/idle"))
        assert read_response(rfile).status == 200
        assert read_until_closed(sock, 30, rfile) == b""
    assert server.get("/still-serving").status == 200


def test_two_listeners_both_serve(start_server) -> None:
    server = start_server("apps.environ", http=("127.0.0.1:0", "127.0.0.1:0"))
    assert len(server.addresses) == 2
    assert server.addresses[0][1] != server.addresses[1][1]
    for index, (_, port) in enumerate(server.addresses):
        environ = server.request("GET", f"/listener/{index}", index=index).json()["values"]
        assert environ["SERVER_PORT"] == str(port)


@pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback here")
def test_ipv6_listener(start_server) -> None:
    server = start_server("apps.environ:application", http=("[::1]:0",))
    assert server.host == "::1"
    assert "listening on http://[::1]:" in server.logs()
    environ = server.get_json("/v6")["values"]
    assert environ["REMOTE_ADDR"] == "::1"
    assert environ["SERVER_PORT"] == str(server.port)
