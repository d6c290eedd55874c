"""The WSGI environ (PEP 3333): CGI keys, HTTP_* headers, wsgi.* keys, native
strings decoded as latin-1, and wsgi.errors reaching the server log."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import Server, read_response

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(start_module_server) -> Server:
    return start_module_server("apps.environ:application")


def echo(server: Server, method: str = "GET", path: str = "/", **kwargs: Any) -> dict[str, Any]:
    response = server.request(method, path, **kwargs)
    assert response.status == 200, (response, server.logs())
    return response.json()


def test_cgi_keys_for_a_simple_get(server: Server) -> None:
    conn = server.connection()
    try:
        conn.request("GET", "/some/path?x=1&y=two")
        client_port = conn.sock.getsockname()[1]
        response = conn.getresponse()
        report = json.loads(response.read())
    finally:
        conn.close()
    env = report["values"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/some/path"
    assert env["QUERY_STRING"] == "x=1&y=two"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert isinstance(env["SERVER_NAME"], str) and env["SERVER_NAME"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env.get("CONTENT_TYPE", "") == ""


def test_every_cgi_value_is_a_native_str(server: Server) -> None:
    report = echo(server, "POST", "/types?q=1", body=b"abc", headers={"Content-Type": "text/x"})
    for key, type_name in report["types"].items():
        if "." not in key:
            assert type_name == "str", f"{key} is {type_name}"
    for key in (
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
    ):
        assert key in report["values"], key


def test_query_string_is_empty_not_missing(server: Server) -> None:
    env = echo(server, path="/no-query")["values"]
    assert env["QUERY_STRING"] == ""


def test_query_string_is_passed_undecoded(server: Server) -> None:
    env = echo(server, path="/q?a=%20b&c=d%2Fe&f")["values"]
    assert env["QUERY_STRING"] == "a=%20b&c=d%2Fe&f"


def test_path_info_is_percent_decoded_as_latin1(server: Server) -> None:
    env = echo(server, path="/caf%C3%A9/a%20b/%2Fslash/%7E")["values"]
    expected = b"/caf\xc3\xa9/a b//slash/~".decode("latin-1")
    assert env["PATH_INFO"] == expected


def test_content_type_and_length_have_no_http_prefix(server: Server) -> None:
    report = echo(
        server, "POST", "/post", body=b"hello", headers={"Content-Type": "application/json"}
    )
    env = report["values"]
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/json"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_request_headers_become_http_keys(server: Server) -> None:
    env = echo(
        server,
        path="/headers",
        headers={"X-Custom-Thing": "value 1", "Accept": "text/html", "User-Agent": "rwsgi-tests"},
    )["values"]
    assert env["HTTP_X_CUSTOM_THING"] == "value 1"
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["HTTP_USER_AGENT"] == "rwsgi-tests"


def test_repeated_headers_are_joined_with_comma_space(server: Server) -> None:
    response = server.exchange(
        b"GET /dup HTTP/1.1\r\nHost: test\r\nX-Dup: a\r\nX-Other: o\r\nX-Dup: b\r\nx-dup: c\r\n\r\n"
    )
    assert response.status == 200
    env = response.json()["values"]
    assert env["HTTP_X_DUP"] == "a, b, c"
    assert env["HTTP_X_OTHER"] == "o"


def test_header_bytes_are_decoded_as_latin1(server: Server) -> None:
    response = server.exchange(
        b"GET /latin HTTP/1.1\r\nHost: test\r\nX-Latin: caf\xe9 \xff\r\n\r\n"
    )
    assert response.status == 200
    assert response.json()["values"]["HTTP_X_LATIN"] == "caf\xe9 \xff"


def test_custom_method_is_passed_through(server: Server) -> None:
    env = echo(server, "PURGE", "/custom-method")["values"]
    assert env["REQUEST_METHOD"] == "PURGE"


def test_wsgi_keys(server: Server) -> None:
    report = echo(server, path="/wsgi")
    env = report["values"]
    assert env["wsgi.version"] == [1, 0]
    assert report["types"]["wsgi.version"] == "tuple"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert report["types"]["wsgi.multithread"] == "bool"
    assert report["types"]["wsgi.multiprocess"] == "bool"
    assert report["methods"]["wsgi.input"] == ["read", "readline", "readlines", "__iter__"]
    assert report["methods"]["wsgi.errors"] == ["write", "writelines", "flush"]
    assert report["file_wrapper_callable"] is True


def test_single_worker_single_thread_flags(server: Server) -> None:
    env = echo(server, path="/flags")["values"]
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False


@pytest.mark.parametrize(("workers", "threads"), [(1, 3), (2, 1)])
def test_multithread_and_multiprocess_flags(start_server, workers: int, threads: int) -> None:
    server = start_server("apps.environ:application", workers=workers, threads=threads)
    env = server.get_json("/flags")["values"]
    assert env["wsgi.multithread"] is (threads > 1)
    assert env["wsgi.multiprocess"] is (workers > 1)


def test_wsgi_errors_writes_reach_the_server_log(server: Server) -> None:
    marker = f"errors-marker-{uuid.uuid4().hex}"
    since = server.mark()
    assert server.get(f"/errors?msg={marker}").status == 200
    server.wait_for_log(marker, timeout=5, since=since)
    server.wait_for_log("second line via writelines", timeout=5, since=since)


def test_http10_without_host(server: Server) -> None:
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(b"GET /ten HTTP/1.0\r\nX-A: 1\r\n\r\n")
        response = read_response(rfile)
    assert response.status == 200
    env = response.json()["values"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["SERVER_NAME"]
    assert env["SERVER_PORT"] == str(server.port)
    assert env["HTTP_X_A"] == "1"
    assert "HTTP_HOST" not in env


def test_environ_is_fresh_for_each_request(server: Server) -> None:
    conn = server.connection()
    try:
        conn.request("GET", "/first", headers={"X-Only-First": "1"})
        first = conn.getresponse().read()
        conn.request("GET", "/second")
        second = conn.getresponse().read()
    finally:
        conn.close()
    assert json.loads(first)["values"]["HTTP_X_ONLY_FIRST"] == "1"
    assert "HTTP_X_ONLY_FIRST" not in json.loads(second)["values"]
