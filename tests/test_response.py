"""The response side of PEP 3333: status and headers, streaming and chunked
bodies, write(), wsgi.file_wrapper, exc_info, close() in every ending, errors
in the app, and responses that must not have a body."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from apps.response import pattern
from conftest import (
    IncompleteResponse,
    Server,
    read_head,
    read_response,
    recorded_lines,
    url_arg,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(start_module_server) -> Server:
    return start_module_server("apps.response:application", threads=2)


lines = recorded_lines


def wait_for_record(path: Path, prefix: str, timeout: float = 10.0) -> list[str]:
    wait_until(lambda: any(line.startswith(prefix) for line in lines(path)), timeout)
    return lines(path)


def raw_get(path: str, version: str = "HTTP/1.1", method: str = "GET") -> bytes:
    host = "Host: test\r\n" if version == "HTTP/1.1" else ""
    return f"{method} {path} {version}\r\n{host}\r\n".encode("latin-1")


# -- bodies -------------------------------------------------------------------


def test_content_length_body(server: Server) -> None:
    response = server.exchange(raw_get("/hello"))
    assert response.status == 200
    assert response.header("content-length") == "5"
    assert not response.chunked
    assert response.body == b"hello"


def test_list_without_content_length(server: Server) -> None:
    response = server.exchange(raw_get("/parts?n=4"))
    assert response.body == b"part0;part1;part2;part3;"


def test_generator_without_content_length_is_chunked(server: Server) -> None:
    response = server.exchange(raw_get("/stream_nocl"))
    assert response.status == 200
    assert response.chunked, response.headers
    assert response.header("content-length") is None
    assert response.body == b"abbccc", "an empty item must not end the chunked body"


def test_generator_to_http10_client_is_close_delimited(server: Server) -> None:
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get("/stream_nocl", "HTTP/1.0"))
        response = read_response(rfile)
    assert response.status == 200
    assert not response.chunked
    assert response.body == b"abbccc"


def test_first_chunk_reaches_the_client_before_the_generator_ends(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get(f"/gate?gate={url_arg(gate)}"))
        try:
            _, status, _, headers = read_head(rfile)
            assert status == 200
            assert any(
                k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers
            )
            size = int(rfile.readline().split(b";")[0], 16)
            first = rfile.read(size)
        except TimeoutError:
            pytest.fail("the first chunk was held back until the generator finished")
        finally:
            gate.touch()
        assert first == b"first\n"
        assert rfile.read(2) == b"\r\n"
        rest = b""
        while True:
            size = int(rfile.readline().split(b";")[0], 16)
            if size == 0:
                assert rfile.readline() == b"\r\n"
                break
            rest += rfile.read(size)
            assert rfile.read(2) == b"\r\n"
    assert rest == b"second\n"


def test_large_streamed_response(server: Server) -> None:
    size = 20 * 1024 * 1024 + 7
    response = server.exchange(raw_get(f"/big?size={size}&chunk=65536"), timeout=30)
    assert response.status == 200
    assert len(response.body) == size
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(pattern(size)).digest()


def test_app_content_length_is_kept(server: Server) -> None:
    response = server.exchange(raw_get("/big?size=100000&chunk=1000&cl=1"))
    assert response.header("content-length") == "100000"
    assert not response.chunked
    assert response.body == pattern(100000)


def test_repeated_response_headers_are_all_sent(server: Server) -> None:
    response = server.exchange(raw_get("/cookies"))
    cookies = [value for key, value in response.headers if key.lower() == "set-cookie"]
    assert cookies == ["a=1; Path=/", "b=2; Path=/"]
    assert response.header("x-spaces") == "keep  inner  spaces"


# -- write() ------------------------------------------------------------------


def test_write_callable_then_iterable(server: Server) -> None:
    response = server.get("/write")
    assert response.status == 200
    assert response.body == b"one,two,three"


def test_write_callable_only(server: Server) -> None:
    assert server.get("/write_only").body == b"written"


def test_write_data_precedes_the_iterable_and_arrives_intact(
    server: Server, tmp_path: Path
) -> None:
    # rwsgi calls the app inline on the I/O thread, so write() data is buffered
    # for transmission (as PEP 3333 allows) and sent when the app returns; the
    # README says so. What must hold: all of it arrives, before the iterable's.
    gate = tmp_path / "gate"
    gate.touch()
    response = server.get(f"/write_gate?gate={url_arg(gate)}")
    assert response.status == 200
    assert response.body == b"early\nlate\n"


# -- status line and headers --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        ("200 Fine", 200, "Fine"),
        ("418 I'm a teapot", 418, "I'm a teapot"),
        ("599 Odd One", 599, "Odd One"),
    ],
)
def test_custom_reason_phrase_is_sent_as_given(
    server: Server, status: str, code: int, reason: str
) -> None:
    response = server.exchange(raw_get(f"/status?status={url_arg(status)}"))
    assert (response.status, response.reason) == (code, reason)
    assert response.body == b"body"


@pytest.mark.parametrize("status", ["abc", "20 OK", "2000 OK", "OK 200", ""])
def test_invalid_status_is_500_and_logged(server: Server, status: str) -> None:
    since = server.mark()
    response = server.exchange(raw_get(f"/status?status={url_arg(status)}"))
    assert response.status == 500
    assert response.body != b"body"
    server.wait_for_log(r"(?i)status", timeout=5, since=since)
    assert server.get("/hello").status == 200


@pytest.mark.parametrize("kind", ["cr", "lf", "crlf"])
def test_header_value_with_cr_or_lf_is_500_and_logged(server: Server, kind: str) -> None:
    since = server.mark()
    response = server.exchange(raw_get(f"/bad_header?kind={kind}"))
    assert response.status == 500
    assert response.header("injected") is None
    assert response.header("x-bad") is None
    assert b"should not be sent" not in response.body
    server.wait_for_log(r"(?i)header", timeout=5, since=since)


# -- app errors ---------------------------------------------------------------


def test_exception_before_start_response_is_500_with_traceback(server: Server) -> None:
    tag = uuid.uuid4().hex
    since = server.mark()
    response = server.get(f"/raise?tag={tag}")
    assert response.status == 500
    assert tag.encode() not in response.body, "the traceback must not leak to the client"
    server.wait_for_log(r"Traceback \(most recent call last\)", timeout=5, since=since)
    server.wait_for_log(f"RuntimeError: boom-before-start-response-{tag}", timeout=5, since=since)
    for _ in range(3):
        assert server.get("/hello").body == b"hello"


def test_app_exception_leaves_the_worker_serving(server: Server) -> None:
    before = server.get("/pid").body
    for i in range(5):
        assert server.get(f"/raise?tag=again{i}").status == 500
    assert server.get("/pid").body == before, "the worker must survive app exceptions"


def test_non_bytes_body_is_500_and_logged(server: Server) -> None:
    since = server.mark()
    response = server.get("/str_body")
    assert response.status == 500
    assert b"not bytes" not in response.body
    server.wait_for_log(r"bytes", timeout=5, since=since)


def test_exception_after_start_response_is_500(server: Server) -> None:
    since = server.mark()
    response = server.get("/raise_after_start")
    assert response.status == 500
    server.wait_for_log("boom-after-start-response", timeout=5, since=since)


def test_exc_info_before_the_body_replaces_status_and_headers(server: Server) -> None:
    response = server.get("/excinfo_replace")
    assert response.status == 500
    assert response.header("x-replaced") == "yes"
    assert response.header("x-first") is None
    assert response.body == b"error page"


def test_exc_info_after_the_headers_were_sent_reraises(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "record"
    since = server.mark()
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get(f"/excinfo_after_body?record={url_arg(record)}"))
        with pytest.raises(IncompleteResponse) as truncated:
            read_response(rfile)
    assert b"unreachable" not in truncated.value.partial
    assert lines(record) == ["reraised late-error-marker"]
    server.wait_for_log("late-error-marker", timeout=5, since=since)


def test_start_response_twice_without_exc_info_is_an_error(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "record"
    response = server.get(f"/start_twice?record={url_arg(record)}")
    assert response.status == 500
    assert lines(record) and lines(record)[0].startswith("raised ")


# -- close() ------------------------------------------------------------------

KINDS = ["closing", "closing_generator"]


@pytest.mark.parametrize("kind", KINDS)
def test_close_is_called_once_after_a_normal_response(
    server: Server, tmp_path: Path, kind: str
) -> None:
    record = tmp_path / "record"
    response = server.get(f"/{kind}?record={url_arg(record)}")
    assert response.status == 200
    assert response.body in (b"chunk1\nchunk2\n", b"gen1\ngen2\n")
    assert wait_for_record(record, "closed") == ["closed after 3"]


@pytest.mark.parametrize("kind", KINDS)
def test_close_is_called_when_iteration_raises(server: Server, tmp_path: Path, kind: str) -> None:
    record = tmp_path / "record"
    since = server.mark()
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get(f"/{kind}?mode=raise&record={url_arg(record)}"))
        try:
            response = read_response(rfile)
        except IncompleteResponse:
            pass  # headers went out with the first chunk: the body is cut short
        else:
            assert response.status == 500, "a failed body must not look like a complete 200"
    assert wait_for_record(record, "closed") == ["closed after 2"]
    server.wait_for_log("boom-mid-", timeout=5, since=since)
    assert server.get("/hello").status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_close_is_called_when_the_client_disconnects(
    start_server, tmp_path: Path, kind: str
) -> None:
    # its own server: if close() never comes, the endless body keeps a thread busy
    server = start_server("apps.response:application", "--graceful-timeout", "2")
    record = tmp_path / "record"
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get(f"/{kind}?mode=endless&record={url_arg(record)}"))
        _, status, _, _ = read_head(rfile)
        assert status == 200
        assert rfile.read(1000)
    found = wait_for_record(record, "closed", timeout=10)
    assert len(found) == 1 and found[0].startswith("closed after"), found
    assert server.get("/hello").status == 200


# -- wsgi.file_wrapper --------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(1024 * 1024 + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("blksize", [None, 4096])
def test_file_wrapper_serves_the_file_and_closes_it(
    server: Server, tmp_path: Path, data_file: tuple[Path, bytes], blksize: int | None
) -> None:
    path, data = data_file
    record = tmp_path / "record"
    query = f"path={url_arg(path)}&record={url_arg(record)}"
    if blksize:
        query += f"&blksize={blksize}"
    response = server.exchange(raw_get(f"/file?{query}"))
    assert response.status == 200
    assert len(response.body) == len(data)
    assert response.body == data
    assert wait_for_record(record, "file") == ["file closed"]


def test_file_wrapper_starts_at_the_current_position(
    server: Server, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    response = server.exchange(raw_get(f"/file?path={url_arg(path)}&seek=1000"))
    assert response.body == data[1000:]


def test_file_wrapper_sends_no_more_than_content_length(
    server: Server, data_file: tuple[Path, bytes]
) -> None:
    path, data = data_file
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get(f"/file?path={url_arg(path)}&cl=5000") + raw_get("/hello"))
        first = read_response(rfile)
        second = read_response(rfile)
    assert first.header("content-length") == "5000"
    assert first.body == data[:5000]
    assert (second.status, second.body) == (200, b"hello")


def test_file_wrapper_accepts_objects_without_fileno(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "record"
    response = server.exchange(raw_get(f"/filelike?size=100000&record={url_arg(record)}"))
    assert response.status == 200
    assert response.body == pattern(100000)
    assert wait_for_record(record, "filelike") == ["filelike closed"]


# -- no body ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hello", "/stream_nocl", "/big?size=300000&chunk=1000"])
def test_head_sends_no_body(server: Server, path: str) -> None:
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get(path, method="HEAD") + raw_get("/hello"))
        head = read_response(rfile, "HEAD")
        after = read_response(rfile)
    assert head.status == 200
    if path == "/hello":
        assert head.header("content-length") == "5"
    assert (after.status, after.body) == (200, b"hello"), "HEAD leaked body bytes"


@pytest.mark.parametrize("kind", KINDS)
def test_close_is_called_for_head(server: Server, tmp_path: Path, kind: str) -> None:
    record = tmp_path / "record"
    response = server.exchange(raw_get(f"/{kind}?record={url_arg(record)}", method="HEAD"), "HEAD")
    assert response.status == 200
    found = wait_for_record(record, "closed")
    assert len(found) == 1, found


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_for_204_and_304(server: Server, code: int) -> None:
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(raw_get(f"/nobody?code={code}") + raw_get("/hello"))
        first = read_response(rfile)
        after = read_response(rfile)
    assert first.status == code
    assert first.header("x-code") == str(code)
    assert first.header("transfer-encoding") is None
    assert (after.status, after.body) == (200, b"hello"), f"{code} leaked body bytes"
