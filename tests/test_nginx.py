"""rwsgi behind a real nginx: ``uwsgi_pass`` to a unix socket and to TCP, a
mounted prefix (``uwsgi_modifier1 30``), ``HTTPS on``, an unbuffered stream
and ``proxy_pass`` to ``--http``. nginx must be installed: without it these
tests fail (nginx_helper.find_nginx), they are never skipped.

After every test, nginx's error log must hold no new [error]/[crit]/[alert]
line: an answer nginx could not parse shows up there even when the client
got something.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nginx_helper import Nginx, Rwsgi, short_tmpdir

pytestmark = pytest.mark.timeout(90)

APP = "apps.uwsgi_apps:application"
UWSGI_PARAMS = "/etc/nginx/uwsgi_params"
MAX_BODY = 12 * 1024 * 1024  # rwsgi's --max-body-size: below nginx's client_max_body_size 20m

LOCATIONS = """\
        location / {{
            include {params};
            uwsgi_pass unix:{sock};
        }}
        location /tcp/ {{
            include {params};
            uwsgi_pass 127.0.0.1:{uwsgi_port};
        }}
        location /app/ {{
            include {params};
            uwsgi_param SCRIPT_NAME /app;
            uwsgi_modifier1 30;
            uwsgi_pass unix:{sock};
        }}
        location /secure/ {{
            include {params};
            uwsgi_param HTTPS on;
            uwsgi_pass unix:{sock};
        }}
        location /stream/ {{
            include {params};
            uwsgi_buffering off;
            uwsgi_pass unix:{sock};
        }}
        location /proxy/ {{
            proxy_pass http://127.0.0.1:{http_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
"""


@dataclass
class Stack:
    nginx: Nginx
    rwsgi: Rwsgi
    record: Path
    #: Where no_nginx_errors starts looking in nginx's error log.
    log_mark: int = 0

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=timeout)

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes, int]:
        """One request on a fresh connection: (response, body, our local port)."""
        conn = self.connection()
        try:
            conn.request(method, target, body=body, headers=headers or {})
            local_port = conn.sock.getsockname()[1]
            response = conn.getresponse()
            return response, response.read(), local_port
        finally:
            conn.close()

    def env(self, target: str, **kwargs) -> dict:
        response, body, _ = self.request("GET", target, **kwargs)
        assert response.status == 200, (response.status, body[:300], self.logs())
        return json.loads(body)

    def logs(self) -> str:
        return f"rwsgi log:\n{self.rwsgi.logs()}\nnginx log:\n{self.nginx.error_log()}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not os.path.exists(UWSGI_PARAMS):
        pytest.fail(f"{UWSGI_PARAMS} is missing: install nginx (nginx-light)", pytrace=False)
    tmp = short_tmpdir()
    sock = os.path.join(tmp, "app.sock")
    record = Path(tmp) / "calls.txt"
    rwsgi = Rwsgi(
        APP,
        "--socket",
        sock,
        "--socket",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--threads",
        "4",
        "--max-body-size",
        str(MAX_BODY),
        env={"RWSGI_TEST_RECORD": str(record)},
    )
    nginx = None
    try:
        _, uwsgi_port = rwsgi.tcp("uwsgi")
        _, http_port = rwsgi.tcp("http")
        locations = LOCATIONS.format(
            params=UWSGI_PARAMS, sock=sock, uwsgi_port=uwsgi_port, http_port=http_port
        )
        nginx = Nginx(locations, tmp=os.path.join(tmp, "nginx"))
        yield Stack(nginx, rwsgi, record)
    finally:
        if nginx is not None:
            nginx.stop()
        rwsgi.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def nginx_errors(stack: Stack) -> list[str]:
    """[error] and worse lines nginx logged since ``stack.log_mark``; moves the mark."""
    log = stack.nginx.error_log()
    new, stack.log_mark = log[stack.log_mark :], len(log)
    return [line for line in new.splitlines() if re.search(r"\[(error|crit|alert|emerg)\]", line)]


@pytest.fixture(autouse=True)
def no_nginx_errors(stack: Stack) -> Iterator[None]:
    stack.log_mark = len(stack.nginx.error_log())
    yield
    bad = nginx_errors(stack)
    assert not bad, "nginx logged errors:\n" + "\n".join(bad) + "\n" + stack.rwsgi.logs()


def test_get_with_query_and_percent_encoded_path(stack: Stack) -> None:
    target = "/caf%C3%A9/a%20b/%7Euser?x=1&y=%2F%20&z"
    report = stack.env(target)
    environ = report["environ"]
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/a b/~user"
    assert environ["QUERY_STRING"] == "x=1&y=%2F%20&z"
    assert environ["REQUEST_URI"] == target
    assert environ["SCRIPT_NAME"] == ""
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_PORT"] == str(stack.nginx.port)
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_HOST"] == "127.0.0.1"


def test_remote_addr_is_the_client_as_nginx_reports_it(stack: Stack) -> None:
    response, body, local_port = stack.request("GET", "/env")
    assert response.status == 200
    environ = json.loads(body)["environ"]
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"] == str(local_port)


def test_30_kib_of_headers_and_cookies_arrive_intact(stack: Stack) -> None:
    cookie = "; ".join(f"c{i}={'v' * 1000}{i}" for i in range(20))  # about 20 KiB
    pads = {f"X-Pad-{i}": f"{i}-" + "p" * 2000 for i in range(5)}  # about 10 KiB
    environ = stack.env("/env", headers={"Cookie": cookie, **pads})["environ"]
    assert environ["HTTP_COOKIE"] == cookie
    for name, value in pads.items():
        assert environ["HTTP_" + name.upper().replace("-", "_")] == value


@pytest.mark.parametrize("prefix", ["", "/tcp"])
def test_10_mib_post_echoed_intact(stack: Stack, prefix: str) -> None:
    body = os.urandom(10 * 1024 * 1024)
    response, echoed, _ = stack.request(
        "POST", prefix + "/echo", body=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status == 200, (echoed[:300], stack.logs())
    assert len(echoed) == len(body)
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("path", ["/hash", "/proxy/hash"], ids=["uwsgi_pass", "proxy_pass"])
def test_body_over_max_body_size_is_413_through_nginx(stack: Stack, path: str) -> None:
    """nginx sends the whole body before it reads the answer: rwsgi must let it.

    Closing the connection with the body still unread resets it, and nginx
    then answers 502 instead of passing the 413 on (about half the time), so
    the request is repeated. The same holds through proxy_pass to --http.
    """
    before = len(stack.record.read_text().splitlines()) if stack.record.exists() else 0
    body = b"z" * (MAX_BODY + 2 * 1024 * 1024)
    statuses = []
    for _ in range(6):
        response, _, _ = stack.request("POST", path, body=body)
        statuses.append(response.status)
    errors = "\n".join(nginx_errors(stack))
    assert statuses == [413] * 6, f"statuses {statuses}; nginx errors:\n{errors}"
    assert not errors
    after = len(stack.record.read_text().splitlines()) if stack.record.exists() else 0
    assert after == before, "a body over --max-body-size reached the app"


def test_post_body_reaches_wsgi_input(stack: Stack) -> None:
    body = b"a=1&b=2" * 1000
    response, data, _ = stack.request(
        "POST", "/env", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200
    report = json.loads(data)
    assert report["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert report["environ"]["CONTENT_LENGTH"] == str(len(body))
    assert report["environ"]["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert report["environ"]["REQUEST_METHOD"] == "POST"


def test_streamed_generator_response(stack: Stack) -> None:
    from apps.uwsgi_apps import stream_body

    gate = Path(short_tmpdir()) / "gate"
    conn = stack.connection()
    try:
        conn.request("GET", f"/stream/stream?gate={gate}")
        response = conn.getresponse()
        assert response.status == 200
        # The app now waits for the gate: this chunk got through on its own.
        first = response.read(len(b"first\n"))
        assert first == b"first\n"
        gate.touch()
        rest = response.read()
    finally:
        conn.close()
        shutil.rmtree(gate.parent, ignore_errors=True)
    assert first + rest == stream_body()


def test_app_exception_is_500_and_worker_keeps_serving(stack: Stack) -> None:
    pid = stack.env("/env")["pid"]
    since = stack.rwsgi.mark()
    response, _, _ = stack.request("GET", "/raise")
    assert response.status == 500
    stack.rwsgi.wait_for_log("uwsgi-apps-raise-marker", since=since)
    assert stack.env("/env")["pid"] == pid


@pytest.mark.parametrize(
    ("target", "path_info"),
    [("/app/foo/bar?x=1", "/foo/bar"), ("/app/", "/"), ("/app/a%20b", "/a b")],
)
def test_mounted_prefix_script_name_and_path_info(stack: Stack, target: str, path_info) -> None:
    environ = stack.env(target)["environ"]
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == path_info


def test_https_flag_sets_url_scheme(stack: Stack) -> None:
    environ = stack.env("/secure/env")["environ"]
    assert environ["HTTPS"] == "on"
    assert environ["wsgi.url_scheme"] == "https"
    assert stack.env("/env")["environ"]["wsgi.url_scheme"] == "http"


def test_tcp_uwsgi_pass(stack: Stack) -> None:
    environ = stack.env("/tcp/env?k=v")["environ"]
    assert environ["PATH_INFO"] == "/tcp/env"
    assert environ["QUERY_STRING"] == "k=v"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_head_and_204_through_nginx(stack: Stack) -> None:
    response, body, _ = stack.request("HEAD", "/echo")
    assert response.status == 200 and body == b""
    response, body, _ = stack.request("GET", "/status?code=204")
    assert response.status == 204 and body == b""
    assert response.getheader("X-Status") == "204"


def test_proxy_pass_to_http_get_and_post(stack: Stack) -> None:
    environ = stack.env("/proxy/env?a=%20b")["environ"]
    assert environ["PATH_INFO"] == "/proxy/env"
    assert environ["QUERY_STRING"] == "a=%20b"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    body = os.urandom(1024 * 1024)
    response, echoed, _ = stack.request("POST", "/proxy/echo", body=body)
    assert response.status == 200
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(body).hexdigest()


def test_every_request_reached_the_app_once(stack: Stack) -> None:
    before = len(stack.record.read_text().splitlines())
    stack.env("/env?once=1")
    assert len(stack.record.read_text().splitlines()) == before + 1
