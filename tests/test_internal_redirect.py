"""X-Accel-Redirect and X-Sendfile (--internal-map, issue 14), over every
kind of listener: the app answers with one of the headers, the server sends
the named file instead of the app's body.

The app's Content-Type, Content-Disposition, Cache-Control, Expires and
Set-Cookie are kept; every other header of the app (its Content-Length, ETag,
Last-Modified, the handover header itself) is dropped and the file's own are
sent; ranges, conditional requests and HEAD work as for a static file; a
file that is missing, outside every internal folder or named with a
traversal trick is a 404 with a log line; the app's iterable is always
closed. Without --internal-map the headers pass untouched, and a client's
own request for the internal prefix is the app's, as any other URL.

The app is apps/accel.py; the folder is support/static_tree.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest
from conftest import RawResponse, Rwsgi, ServerFactory, recorded_lines, url_arg, wait_until
from support import static_tree
from support.static_tree import DOC_TXT, REPORT_PDF, SECRET, Tree
from support.transports import LISTENER_KINDS, Direct, Header, Transport, start_on_every_listener

pytestmark = pytest.mark.timeout(60)

APP = "apps.accel:application"
APP_BODY = b"the app's own body, which the server must discard\n"
APP_TYPE = "application/x-chosen-by-the-app"
KEPT = {
    "content-disposition": 'attachment; filename="chosen.pdf"',
    "cache-control": "private, max-age=60",
    "expires": "Thu, 01 Jan 2037 00:00:00 GMT",
}
COOKIES = ["first=1; Path=/", "second=2; Path=/; HttpOnly"]


@dataclass
class Accel:
    """A server running apps/accel.py, its tree and a folder for close() records."""

    server: Rwsgi
    record: Path
    tree: Tree

    def calls(self) -> list[str]:
        return recorded_lines(self.record)

    def closed_file(self, name: str) -> Path:
        """Where the app's close() notes itself for one request."""
        path = self.record.parent / f"closed-{name}.txt"
        path.unlink(missing_ok=True)
        return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return static_tree.build(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def accel(start_module_server: ServerFactory, tree: Tree) -> Accel:
    args = ["--internal-map", f"/protected={tree.protected}", "--static-map"]
    args.append(f"/static={tree.static}")
    return Accel(*start_on_every_listener(start_module_server, APP, *args), tree)


@pytest.fixture(scope="module")
def passthrough(start_module_server: ServerFactory, tree: Tree) -> Accel:
    """No --internal-map: the app may sit behind a real nginx."""
    args = ["--static-map", f"/static={tree.static}"]
    return Accel(*start_on_every_listener(start_module_server, APP, *args), tree)


@pytest.fixture(params=list(LISTENER_KINDS))
def kind(request: pytest.FixtureRequest) -> type[Transport]:
    return LISTENER_KINDS[request.param]


def accel_target(closed: Path | None = None, noctype: bool = False, **handed: str) -> str:
    """The app's URL for one handover (``redirect=`` or ``sendfile=``)."""
    args = [f"{key}={url_arg(value)}" for key, value in handed.items()]
    if closed is not None:
        args.append(f"closed={url_arg(closed)}")
    if noctype:
        args.append("noctype=1")
    return "/accel?" + "&".join(args)


def send(t: Transport, method: str, target: str, *headers: Header) -> RawResponse:
    response = t.request(method, target, headers)
    assert response.trailing == b"", f"bytes after the message: {response.trailing[:200]!r}"
    return response


def assert_closed(path: Path) -> None:
    """The app's iterable was closed, once (it may be after the answer)."""
    assert wait_until(lambda: recorded_lines(path), 10) == ["closed"]


def assert_file_answer(response: RawResponse, path: Path, content_type: str) -> None:
    """The file's bytes and own headers, with the app's kept ones and no other."""
    data = path.read_bytes()
    assert response.status == 200, response
    assert response.body == data, response.body[:200]
    assert response.header("content-length") == str(len(data))
    assert response.header("content-type") == content_type
    for name, value in KEPT.items():
        assert response.header(name) == value, name
    assert response.headers_named("set-cookie") == COOKIES
    modified = formatdate(int(path.stat().st_mtime), usegmt=True)
    assert response.header("last-modified") == modified
    etag = response.header("etag")
    assert etag is not None and etag != '"the-app-etag"', response.headers
    for dropped in ("x-app-only", "x-accel-redirect", "x-sendfile"):
        assert response.header(dropped) is None, (dropped, response.headers)
    assert APP_BODY not in response.body


# -- over every kind of listener ------------------------------------------------------


def test_redirect_sends_the_file_with_the_kept_headers(accel: Accel, kind: type[Transport]) -> None:
    t = kind(accel.server)
    closed = accel.closed_file(f"redirect-{t.name}")
    response = send(t, "GET", accel_target(closed, redirect="/protected/report.pdf"))
    assert_file_answer(response, accel.tree.protected / "report.pdf", APP_TYPE)
    assert_closed(closed)


def test_range_and_conditionals_on_a_redirected_file(accel: Accel, kind: type[Transport]) -> None:
    t = kind(accel.server)
    target = accel_target(redirect="/protected/report.pdf")
    etag = send(t, "GET", target).header("etag")
    assert etag is not None
    part = send(t, "GET", target, ("Range", "bytes=4-11"))
    assert part.status == 206, part
    assert part.header("content-range") == f"bytes 4-11/{len(REPORT_PDF)}"
    assert part.body == REPORT_PDF[4:12]
    assert part.header("content-type") == APP_TYPE
    not_modified = send(t, "GET", target, ("If-None-Match", etag))
    assert not_modified.status == 304, not_modified
    assert not_modified.body == b"" and not_modified.header("etag") == etag
    assert send(t, "GET", target, ("If-None-Match", '"stale"')).body == REPORT_PDF


def test_head_of_a_redirected_file(accel: Accel, kind: type[Transport]) -> None:
    t = kind(accel.server)
    closed = accel.closed_file(f"head-{t.name}")
    response = send(t, "HEAD", accel_target(closed, redirect="/protected/doc.txt"))
    assert response.status == 200, response
    assert response.header("content-length") == str(len(DOC_TXT))
    assert response.body == b""
    assert response.header("x-accel-redirect") is None
    assert_closed(closed)


def test_a_missing_file_is_a_404_and_the_iterable_is_closed(
    accel: Accel, kind: type[Transport]
) -> None:
    t = kind(accel.server)
    closed = accel.closed_file(f"missing-{t.name}")
    mark = accel.server.mark()
    response = send(t, "GET", accel_target(closed, redirect="/protected/missing.pdf"))
    assert response.status == 404, response
    assert APP_BODY not in response.body
    assert response.header("x-accel-redirect") is None
    assert_closed(closed)
    accel.server.wait_for_log(re.escape("/protected/missing.pdf"), since=mark)


def test_a_client_request_for_the_internal_prefix_is_the_apps(
    accel: Accel, kind: type[Transport]
) -> None:
    t = kind(accel.server)
    before = len(accel.calls())
    response = send(t, "GET", "/protected/doc.txt")
    assert response.status == 200, response
    assert response.body == b"from the app\nGET\n/protected/doc.txt\n"
    assert accel.calls()[before:] == ["/protected/doc.txt"]


# -- which files may be handed over ---------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/protected/../secret.txt",
        "/protected/%2e%2e/secret.txt",
        "/protected/sub/..%2f..%2fsecret.txt",
        "/protected/%2E%2e%2Fsecret.txt",
        "/protected/..%5csecret.txt",
        "/protected//etc/passwd",
        "/protected/doc.txt%00.pdf",
        "/protected/./doc.txt",
        "/static/hello.txt",
        "/elsewhere/doc.txt",
        "/protectedx/doc.txt",
        "protected/doc.txt",
    ],
)
def test_a_refused_redirect_is_a_404(accel: Accel, target: str) -> None:
    closed = accel.closed_file("refused")
    mark = accel.server.mark()
    response = send(Direct(accel.server), "GET", accel_target(closed, redirect=target))
    assert response.status == 404, (target, response)
    assert SECRET not in response.body and APP_BODY not in response.body
    assert static_tree.TYPED["hello.txt"][0] not in response.body
    assert_closed(closed)
    accel.server.wait_for_log(re.escape(target), since=mark)


def test_redirect_to_a_subfolder_and_type_from_the_extension(accel: Accel) -> None:
    t = Direct(accel.server)
    sub = send(t, "GET", accel_target(redirect="/protected/sub/file.pdf"))
    assert_file_answer(sub, accel.tree.protected / "sub" / "file.pdf", APP_TYPE)
    untyped = send(t, "GET", accel_target(noctype=True, redirect="/protected/doc.txt"))
    assert_file_answer(untyped, accel.tree.protected / "doc.txt", "text/plain; charset=utf-8")
    encoded = send(t, "GET", accel_target(redirect="/protected/sub/%66ile.pdf"))
    assert encoded.status == 200 and encoded.body == static_tree.SUB_FILE_PDF, encoded
    query = send(t, "GET", accel_target(redirect="/protected/doc.txt?download=1"))
    assert query.status == 200 and query.body == DOC_TXT, query


def test_sendfile_inside_the_folder(accel: Accel, kind: type[Transport]) -> None:
    t = kind(accel.server)
    closed = accel.closed_file(f"sendfile-{t.name}")
    path = accel.tree.protected / "doc.txt"
    response = send(t, "GET", accel_target(closed, sendfile=str(path)))
    assert_file_answer(response, path, APP_TYPE)
    assert_closed(closed)


def test_sendfile_outside_the_folder_is_a_404(accel: Accel) -> None:
    t = Direct(accel.server)
    tree = accel.tree
    for path in (
        tree.secret,
        tree.protected / ".." / "secret.txt",
        tree.static / "hello.txt",
        tree.protected / "missing.pdf",
        tree.protected / "sub",
        Path("protected/doc.txt"),
    ):
        closed = accel.closed_file("sendfile-outside")
        response = send(t, "GET", accel_target(closed, sendfile=str(path)))
        assert response.status == 404, (path, response)
        assert SECRET not in response.body and APP_BODY not in response.body
        assert_closed(closed)


def test_without_internal_map_the_headers_pass_untouched(passthrough: Accel) -> None:
    t = Direct(passthrough.server)
    closed = passthrough.closed_file("passthrough")
    response = send(t, "GET", accel_target(closed, redirect="/protected/report.pdf"))
    assert response.status == 200, response
    assert response.body == APP_BODY
    assert response.header("x-accel-redirect") == "/protected/report.pdf"
    assert response.header("x-app-only") == "must not reach the client"
    assert response.header("etag") == '"the-app-etag"'
    assert response.header("content-length") == str(len(APP_BODY))
    assert_closed(closed)
    path = str(passthrough.tree.protected / "doc.txt")
    sendfile = send(t, "GET", accel_target(sendfile=path))
    assert sendfile.body == APP_BODY and sendfile.header("x-sendfile") == path
