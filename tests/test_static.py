"""Static files (--static-map, issue 14): served by the server alone, on every
protocol (HTTP on TCP, HTTP on a unix socket, uwsgi), as /tmp/static_spec.md
says: matching at segment boundaries, refusal of every traversal trick with a
404 that never reaches the app, fall-through of missing files and folders to
the app, the headers of a 200, conditional requests, ranges, precompressed
siblings, symbolic links, non-regular files, methods, large files with
bounded memory, and ``serve(static=...)``.

The folder is built by support/static_tree.py; the app (apps/static_fallback.py)
notes every call, so "never the app" is a count of its calls, and whatever
it answers says ``from the app``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from conftest import RawResponse, Rwsgi, ServerFactory, read_head, recorded_lines
from support import static_tree
from support.static_tree import (
    ENCODING,
    HASHED,
    MIB,
    NEAR_MISSES,
    SECRET,
    SIBLINGS,
    TYPED,
    X_CSS,
    Tree,
)
from support.transports import (
    LISTENER_KINDS,
    Direct,
    Header,
    HttpUnix,
    Transport,
    Uwsgi,
    start_on_every_listener,
)
from support.uwsgi import request_vars, uwsgi_packet

pytestmark = pytest.mark.timeout(90)

APP = "apps.static_fallback:application"
FROM_APP = b"from the app"
YEAR = "public, max-age=31536000, immutable"
EXPIRES = 3600
BIG = 20 * MIB


@dataclass
class Static:
    """A running server over every kind of listener, its tree and its app's record."""

    server: Rwsgi
    record: Path
    tree: Tree

    def calls(self) -> list[str]:
        return recorded_lines(self.record)

    def direct(self) -> Transport:
        return Direct(self.server)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return static_tree.build(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def plain(start_module_server: ServerFactory, tree: Tree) -> Static:
    """The defaults: links followed, misses to the app, no Cache-Control."""
    return Static(*start_on_every_listener(start_module_server, APP, *tree.static_args()), tree)


@pytest.fixture(scope="module")
def strict(start_module_server: ServerFactory, tree: Tree) -> Static:
    """--static-strict, --static-confine and --static-expires together."""
    args = [*tree.static_args(), "--static-strict", "--static-confine"]
    args += ["--static-map", f"/linked={tree.static_link}"]
    args += ["--static-expires", str(EXPIRES)]
    return Static(*start_on_every_listener(start_module_server, APP, *args), tree)


@pytest.fixture(params=list(LISTENER_KINDS))
def kind(request: pytest.FixtureRequest) -> type[Transport]:
    return LISTENER_KINDS[request.param]


def send(
    t: Transport,
    method: str,
    target: str,
    headers: Sequence[Header] = (),
    body: bytes = b"",
) -> RawResponse:
    """One request; over uwsgi nothing may follow the message."""
    response = t.request(method, target, headers, body)
    assert response.trailing == b"", f"bytes after the message: {response.trailing[:200]!r}"
    return response


def get(t: Transport, target: str, *headers: Header) -> RawResponse:
    return send(t, "GET", target, headers)


def send_target(t: Transport, target: str, method: str = "GET") -> RawResponse:
    """A request target exactly as written. Over uwsgi, PATH_INFO is what a
    proxy sends (the target's path percent-decoded) and REQUEST_URI the raw
    target, so the refusal holds whichever of the two the server reads."""
    if t.is_http:
        return send(t, method, target)
    path, _, query = target.partition("?")
    pairs = request_vars(method, path, query)
    pairs["PATH_INFO"] = unquote_to_bytes(path)
    with t.connect() as conn:
        conn.send(uwsgi_packet(pairs))
        response = conn.response(method)
    assert response.trailing == b""
    return response


def etag_of(response: RawResponse) -> str:
    etag = response.header("etag")
    assert etag is not None, response
    return etag


def vary_names(response: RawResponse) -> set[str]:
    values = response.headers_named("vary")
    return {name.strip().lower() for value in values for name in value.split(",")}


def http_date(path: Path) -> str:
    return formatdate(int(path.stat().st_mtime), usegmt=True)


def assert_static_200(response: RawResponse, path: Path, content_type: str) -> None:
    """Every header of a 200 the spec names, and the exact bytes."""
    data = path.read_bytes()
    assert response.status == 200, response
    assert response.body == data, response.body[:200]
    assert response.header("content-type") == content_type, response.headers
    assert response.header("content-length") == str(len(data)), response.headers
    assert response.header("accept-ranges") == "bytes", response.headers
    assert response.header("last-modified") == http_date(path), response.headers
    etag = etag_of(response)
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2, etag
    assert response.header("content-encoding") is None, response.headers


class AppCalls:
    """Counts the app's calls around a block: ``reached`` is what came in."""

    def __init__(self, static: Static) -> None:
        self.static = static
        self.before = len(static.calls())

    @property
    def reached(self) -> list[str]:
        return self.static.calls()[self.before :]


def assert_refused(response: RawResponse, calls: AppCalls) -> None:
    """A 404 from the server: not the app's, and not the secret."""
    assert response.status == 404, response
    assert SECRET not in response.raw + response.body
    assert FROM_APP not in response.body, response.body
    assert calls.reached == [], calls.reached


# -- the core cases, over every kind of listener --------------------------------


def test_200_has_every_header_and_the_exact_bytes(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    calls = AppCalls(plain)
    response = get(t, "/static/hello.txt")
    assert_static_200(response, plain.tree.static / "hello.txt", "text/plain; charset=utf-8")
    assert response.header("cache-control") is None, response.headers
    assert vary_names(response) == set(), "no siblings, so no Vary"
    binary = get(t, "/static/one.bin")
    assert_static_200(binary, plain.tree.static / "one.bin", "application/octet-stream")
    assert calls.reached == []


def test_head_has_the_headers_of_get_and_no_body(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    full = get(t, "/static/style.css")
    with t.connect() as conn:
        conn.send(t.encode("HEAD", "/static/style.css"))
        if t.is_http:  # a body after the head would be read as the next response
            conn.send(t.encode("GET", "/static/hello.txt"))
        head = conn.response("HEAD")
        assert head.status == 200, head
        for name in ("content-type", "content-length", "etag", "last-modified", "accept-ranges"):
            assert head.header(name) == full.header(name), name
        assert head.body == b"" and head.trailing == b"", head
        if t.is_http:
            after = conn.response()
            assert after.status == 200 and after.body == TYPED["hello.txt"][0], after


def test_if_none_match_gives_304_without_body(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    first = get(t, "/static/hello.txt")
    etag = etag_of(first)
    response = get(t, "/static/hello.txt", ("If-None-Match", etag))
    assert response.status == 304, response
    assert response.header("etag") == etag
    assert response.header("last-modified") == first.header("last-modified")
    assert response.body == b""


def test_single_range_gives_206(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    data = (plain.tree.static / "one.bin").read_bytes()
    response = get(t, "/static/one.bin", ("Range", "bytes=1000-2999"))
    assert response.status == 206, response
    assert response.header("content-range") == f"bytes 1000-2999/{len(data)}"
    assert response.header("content-length") == "2000"
    assert response.body == data[1000:3000]


def test_unsatisfiable_range_gives_416(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    size = len(TYPED["hello.txt"][0])
    response = get(t, "/static/hello.txt", ("Range", f"bytes={size}-"))
    assert response.status == 416, response
    assert response.header("content-range") == f"bytes */{size}"


def test_precompressed_choice_says_vary(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    br = get(t, "/static/x.css", ("Accept-Encoding", "br, gzip"))
    assert br.status == 200, br
    assert br.body == SIBLINGS["br"] and br.header("content-encoding") == "br"
    assert "accept-encoding" in vary_names(br)
    gz = get(t, "/static/x.css", ("Accept-Encoding", "gzip"))
    assert gz.body == SIBLINGS["gz"] and gz.header("content-encoding") == "gzip"
    assert "accept-encoding" in vary_names(gz)
    identity = get(t, "/static/x.css")
    assert identity.body == X_CSS and identity.header("content-encoding") is None
    assert "accept-encoding" in vary_names(identity)


@pytest.mark.parametrize("kind", [Direct, HttpUnix], ids=["direct", "http-unix"])
def test_every_static_answer_keeps_the_connection_framed(
    plain: Static, kind: type[Transport]
) -> None:
    """Pipelined on one connection: a stray body after a 304, a HEAD or an
    error would be read as the next response."""
    t = kind(plain.server)
    etag = etag_of(get(t, "/static/hello.txt"))
    size = len(TYPED["hello.txt"][0])
    sequence: list[tuple[str, str, list[Header], int]] = [
        ("GET", "/static/hello.txt", [("If-None-Match", etag)], 304),
        ("HEAD", "/static/hello.txt", [], 200),
        ("GET", "/static/hello.txt", [("Range", "bytes=0-4")], 206),
        ("GET", "/static/hello.txt", [("Range", f"bytes={size}-")], 416),
        ("GET", "/static/%2e%2e/secret.txt", [], 404),
        ("DELETE", "/static/hello.txt", [], 405),
        ("HEAD", "/static/x.css", [("Accept-Encoding", "gzip")], 200),
        ("GET", "/static/missing.txt", [], 200),
        ("GET", "/static/hello.txt", [], 200),
    ]
    with t.connect() as conn:
        conn.send(b"".join(t.encode(m, path, headers) for m, path, headers, _ in sequence))
        for method, target, _, status in sequence:
            response = conn.response(method)
            assert response.status == status, (method, target, response)
    assert response.body == TYPED["hello.txt"][0]


# Each target must be refused: (target, also over uwsgi). Over uwsgi PATH_INFO
# is decoded, so a target whose decoded form is an ordinary path (an encoded
# slash between two real names, an invalid escape) is an HTTP-only case.
TRAVERSALS = [
    ("/static/../secret.txt", True),
    ("/static/%2e%2e/secret.txt", True),
    ("/static/%2E%2e%2Fsecret.txt", True),
    ("/static/%2E./secret.txt", True),
    ("/static/..%2fsecret.txt", True),
    ("/static/sub/..%2F..%2Fsecret.txt", True),
    ("/static/sub/../../secret.txt", True),
    ("/static/admin/../../secret.txt", True),
    ("/static/sub%2finner.css", False),
    ("/static/..\\secret.txt", True),
    ("/static/sub\\inner.css", True),
    ("/static/%5c..%5csecret.txt", True),
    ("/static/hello.txt%00.css", True),
    ("/static/%00", True),
    ("/static//etc/passwd", True),
    ("/static/sub//inner.css", True),
    ("/static/./hello.txt", True),
    ("/static/%2e/hello.txt", True),
    ("/static/sub/.", True),
    ("/static/hello%zz.txt", False),
    ("/static/hello.txt%", False),
    ("/static/hello.txt%2", False),
]


@pytest.mark.parametrize(("target", "over_uwsgi"), TRAVERSALS, ids=[t for t, _ in TRAVERSALS])
def test_traversal_is_a_404_from_the_server(
    plain: Static, kind: type[Transport], target: str, over_uwsgi: bool
) -> None:
    if kind is Uwsgi and not over_uwsgi:
        pytest.skip("its decoded PATH_INFO is an ordinary path")
    calls = AppCalls(plain)
    assert_refused(send_target(kind(plain.server), target), calls)


def test_absolute_path_after_an_empty_segment_is_refused(
    plain: Static, kind: type[Transport]
) -> None:
    calls = AppCalls(plain)
    response = send_target(kind(plain.server), "/static/" + str(plain.tree.secret))
    assert_refused(response, calls)


def test_missing_files_and_folders_go_to_the_app(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    for path in ("/static/missing.css", "/static/sub", "/static/sub/", "/static", "/static/"):
        calls = AppCalls(plain)
        response = get(t, path)
        assert response.status == 200, (path, response)
        assert response.body == f"from the app\nGET\n{path}\n".encode(), response.body
        assert calls.reached == [path]


def test_other_methods_on_a_file_are_405(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    calls = AppCalls(plain)
    response = send(t, "POST", "/static/hello.txt", body=b"a=1")
    assert response.status == 405, response
    assert response.header("allow") == "GET, HEAD"
    assert calls.reached == []
    missing = send(t, "POST", "/static/missing.txt", body=b"a=1")
    assert missing.status == 200, missing
    assert missing.body == b"from the app\nPOST\n/static/missing.txt\n"


# -- headers of a 200 -------------------------------------------------------------


@pytest.mark.parametrize("name", list(TYPED))
def test_content_type_and_charset(plain: Static, name: str) -> None:
    content, content_type = TYPED[name]
    response = get(plain.direct(), f"/static/{name}")
    assert response.status == 200, response
    assert response.body == content
    assert response.header("content-type") == content_type


def test_cache_control_without_static_expires(plain: Static) -> None:
    t = plain.direct()
    assert get(t, "/static/hello.txt").header("cache-control") is None
    assert get(t, f"/static/{HASHED}").header("cache-control") == YEAR
    for name in NEAR_MISSES:
        response = get(t, f"/static/{name}")
        assert response.status == 200, response
        assert response.header("cache-control") is None, name


def test_cache_control_with_static_expires(strict: Static) -> None:
    t = strict.direct()
    expires = f"public, max-age={EXPIRES}"
    assert get(t, "/static/hello.txt").header("cache-control") == expires
    assert get(t, f"/static/{HASHED}").header("cache-control") == YEAR
    for name in NEAR_MISSES:
        assert get(t, f"/static/{name}").header("cache-control") == expires, name
    etag = etag_of(get(t, "/static/hello.txt"))
    not_modified = get(t, "/static/hello.txt", ("If-None-Match", etag))
    assert not_modified.status == 304, not_modified
    assert not_modified.header("cache-control") == expires


def test_etag_changes_with_mtime_and_size(plain: Static) -> None:
    t = plain.direct()
    path = plain.tree.static / "mutable.txt"
    old = get(t, "/static/mutable.txt")
    assert old.body == b"version one\n"
    mtime = int(path.stat().st_mtime)
    path.write_bytes(b"version two\n")  # the same size: only the mtime tells
    os.utime(path, (mtime + 100, mtime + 100))
    new = get(t, "/static/mutable.txt")
    assert new.body == b"version two\n"
    assert etag_of(new) != etag_of(old)
    assert new.header("last-modified") == http_date(path) != old.header("last-modified")
    assert get(t, "/static/mutable.txt", ("If-None-Match", etag_of(old))).status == 200
    path.write_bytes(b"version three\n")  # another size, the same mtime
    os.utime(path, (mtime + 100, mtime + 100))
    third = get(t, "/static/mutable.txt")
    assert third.body == b"version three\n"
    assert etag_of(third) not in (etag_of(new), etag_of(old))


# -- conditional requests -----------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ("{etag}", 304),
        ('"no-such-tag", {etag}', 304),
        ('"a", "b",{etag} , "c"', 304),
        ("W/{etag}", 304),
        ("*", 304),
        ('"no-such-tag"', 200),
        ('W/"no-such-tag"', 200),
    ],
)
def test_if_none_match_forms(plain: Static, form: str, status: int) -> None:
    t = plain.direct()
    etag = etag_of(get(t, "/static/style.css"))
    response = get(t, "/static/style.css", ("If-None-Match", form.format(etag=etag)))
    assert response.status == status, (form, response)
    if status == 304:
        assert response.body == b"" and response.header("etag") == etag
    else:
        assert response.body == TYPED["style.css"][0]


def test_if_modified_since(plain: Static) -> None:
    t = plain.direct()
    path = plain.tree.static / "app.js"
    mtime = int(path.stat().st_mtime)
    cases = [
        (formatdate(mtime, usegmt=True), 304),
        (formatdate(mtime + 3600, usegmt=True), 304),
        (formatdate(mtime - 3600, usegmt=True), 200),
        ("not a date", 200),
        ("", 200),
    ]
    for value, status in cases:
        response = get(t, "/static/app.js", ("If-Modified-Since", value))
        assert response.status == status, (value, response)
        if status == 304:
            assert response.body == b""
            assert response.header("etag") is not None
            assert response.header("last-modified") == http_date(path)


def test_if_none_match_wins_over_if_modified_since(plain: Static) -> None:
    t = plain.direct()
    path = plain.tree.static / "app.js"
    etag = etag_of(get(t, "/static/app.js"))
    mtime = int(path.stat().st_mtime)
    later, earlier = formatdate(mtime + 3600, usegmt=True), formatdate(mtime - 3600, usegmt=True)
    stale = get(t, "/static/app.js", ("If-None-Match", '"stale"'), ("If-Modified-Since", later))
    assert stale.status == 200, stale
    fresh = get(t, "/static/app.js", ("If-None-Match", etag), ("If-Modified-Since", earlier))
    assert fresh.status == 304, fresh


def test_conditionals_come_before_range(plain: Static) -> None:
    t = plain.direct()
    etag = etag_of(get(t, "/static/one.bin"))
    response = get(t, "/static/one.bin", ("If-None-Match", etag), ("Range", "bytes=0-9"))
    assert response.status == 304, response
    assert response.body == b""


# -- ranges ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1048000-", 1048000, MIB - 1),
        ("bytes=-100", MIB - 100, MIB - 1),
        ("bytes=1048500-9999999", 1048500, MIB - 1),
        ("bytes=0-", 0, MIB - 1),
        (f"bytes=-{2 * MIB}", 0, MIB - 1),
    ],
)
def test_satisfiable_ranges(plain: Static, spec: str, first: int, last: int) -> None:
    data = (plain.tree.static / "one.bin").read_bytes()
    response = get(plain.direct(), "/static/one.bin", ("Range", spec))
    assert response.status == 206, (spec, response)
    assert response.header("content-range") == f"bytes {first}-{last}/{MIB}"
    assert response.header("content-length") == str(last - first + 1)
    assert response.body == data[first : last + 1]


@pytest.mark.parametrize("spec", [f"bytes={MIB}-", f"bytes={MIB + 5}-{MIB + 10}", "bytes=-0"])
def test_unsatisfiable_ranges(plain: Static, spec: str) -> None:
    response = get(plain.direct(), "/static/one.bin", ("Range", spec))
    assert response.status == 416, (spec, response)
    assert response.header("content-range") == f"bytes */{MIB}"


@pytest.mark.parametrize(
    "spec", ["bytes=0-1,5-6", "bytes=0-1, 5-6", "bytes=abc", "bytes=", "bytes 0-5", "items=0-5"]
)
def test_several_or_malformed_ranges_give_the_whole_file(plain: Static, spec: str) -> None:
    response = get(plain.direct(), "/static/one.bin", ("Range", spec))
    assert response.status == 200, (spec, response)
    assert response.header("content-range") is None
    assert response.body == (plain.tree.static / "one.bin").read_bytes()


def test_if_range(plain: Static) -> None:
    t = plain.direct()
    first = get(t, "/static/one.bin")
    etag = etag_of(first)
    modified = first.header("last-modified")
    assert modified is not None
    mtime = int((plain.tree.static / "one.bin").stat().st_mtime)
    cases = [
        (etag, 206),
        ('"stale-etag"', 200),
        (f"W/{etag}", 200),
        (modified, 206),
        (formatdate(mtime - 86400, usegmt=True), 200),
        (formatdate(mtime + 86400, usegmt=True), 200),
    ]
    for value, status in cases:
        response = get(t, "/static/one.bin", ("Range", "bytes=0-99"), ("If-Range", value))
        assert response.status == status, (value, response)
        assert len(response.body) == (100 if status == 206 else MIB)


def test_range_of_a_precompressed_sibling(plain: Static) -> None:
    response = get(
        plain.direct(), "/static/x.css", ("Accept-Encoding", "br"), ("Range", "bytes=0-5")
    )
    assert response.status == 206, response
    assert response.header("content-encoding") == "br"
    assert response.header("content-range") == f"bytes 0-5/{len(SIBLINGS['br'])}"
    assert response.body == SIBLINGS["br"][:6]
    assert "accept-encoding" in vary_names(response)


# -- precompressed siblings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("br", "br"),
        ("gzip", "gz"),
        ("zstd", "zst"),
        ("br;q=0, gzip", "gz"),
        ("gzip;q=0.5, br;q=0.4", "gz"),
        ("gzip, zstd, br", "br"),
        ("gzip, zstd", "zst"),
        ("br;q=0.5, zstd;q=0.5, gzip;q=0.5", "br"),
        ("br;q=0, *", "zst"),
        ("*", "br"),
        ("*;q=0", None),
        ("identity", None),
        ("deflate", None),
        ("gzip;q=0", None),
        ("br;q=0, zstd;q=0, gzip;q=0", None),
        (None, None),
    ],
)
def test_accept_encoding_picks_a_sibling(plain: Static, accept: str | None, chosen: str) -> None:
    headers = [] if accept is None else [("Accept-Encoding", accept)]
    response = get(plain.direct(), "/static/x.css", *headers)
    assert response.status == 200, response
    body = X_CSS if chosen is None else SIBLINGS[chosen]
    assert response.body == body, (accept, response.body)
    assert response.header("content-encoding") == (chosen and ENCODING[chosen])
    assert response.header("content-type") == "text/css; charset=utf-8"
    assert response.header("content-length") == str(len(body))
    assert "accept-encoding" in vary_names(response)


def test_each_sibling_has_its_own_etag(plain: Static) -> None:
    t = plain.direct()
    etags = {etag_of(get(t, "/static/x.css"))}
    for coding in ("br", "zstd", "gzip"):
        response = get(t, "/static/x.css", ("Accept-Encoding", coding))
        assert response.header("content-encoding") == coding
        etag = etag_of(response)
        etags.add(etag)
        again = get(t, "/static/x.css", ("Accept-Encoding", coding), ("If-None-Match", etag))
        assert again.status == 304, again
        assert again.header("etag") == etag
        assert "accept-encoding" in vary_names(again)
    assert len(etags) == 4, etags


def test_a_file_with_only_a_gzip_sibling(plain: Static) -> None:
    t = plain.direct()
    gz = get(t, "/static/only.css", ("Accept-Encoding", "br, gzip"))
    assert gz.body == static_tree.ONLY_CSS_GZ and gz.header("content-encoding") == "gzip"
    identity = get(t, "/static/only.css", ("Accept-Encoding", "br"))
    assert identity.body == static_tree.ONLY_CSS
    assert identity.header("content-encoding") is None
    assert "accept-encoding" in vary_names(identity)
    plain_css = get(t, "/static/style.css", ("Accept-Encoding", "br, gzip"))
    assert plain_css.body == TYPED["style.css"][0]
    assert vary_names(plain_css) == set()


def test_a_sibling_asked_for_by_name_is_served_as_it_is(plain: Static) -> None:
    response = get(plain.direct(), "/static/x.css.gz", ("Accept-Encoding", "gzip"))
    assert response.status == 200, response
    assert response.body == SIBLINGS["gz"]
    assert response.header("content-type") == "application/gzip"
    assert response.header("content-encoding") is None


# -- links, odd files, strictness -------------------------------------------------------


def test_links_are_followed_by_default(plain: Static) -> None:
    t = plain.direct()
    calls = AppCalls(plain)
    assert get(t, "/static/link-inside.css").body == static_tree.INNER_CSS
    assert get(t, "/static/link-outside.txt").body == static_tree.OUTSIDE
    assert get(t, "/static/link-dir/deep.txt").body == static_tree.DEEP
    assert calls.reached == []


def test_confine_refuses_links_that_leave_the_folder(strict: Static) -> None:
    t = strict.direct()
    calls = AppCalls(strict)
    inside = get(t, "/static/link-inside.css")
    assert inside.status == 200 and inside.body == static_tree.INNER_CSS, inside
    for path in ("/static/link-outside.txt", "/static/link-dir/deep.txt"):
        response = get(t, path)
        assert response.status == 404, (path, response)
        assert static_tree.OUTSIDE not in response.body
        assert static_tree.DEEP not in response.body
    assert calls.reached == []


def test_confine_follows_a_folder_that_is_itself_a_link(strict: Static) -> None:
    response = get(strict.direct(), "/linked/hello.txt")
    assert response.status == 200, response
    assert response.body == TYPED["hello.txt"][0]


@pytest.mark.parametrize("server", ["plain", "strict"])
def test_siblings_that_are_no_regular_files_are_not_candidates(
    request: pytest.FixtureRequest, server: str
) -> None:
    static: Static = request.getfixturevalue(server)
    response = get(static.direct(), "/static/odd.css", ("Accept-Encoding", "br, gzip"))
    assert response.status == 200, response
    assert response.body == static_tree.ODD_CSS
    assert response.header("content-encoding") is None


def test_confine_holds_for_siblings(plain: Static, strict: Static) -> None:
    followed = get(plain.direct(), "/static/conf.css", ("Accept-Encoding", "gzip"))
    assert followed.body == static_tree.OUTSIDE, "links are followed by default"
    assert followed.header("content-encoding") == "gzip"
    confined = get(strict.direct(), "/static/conf.css", ("Accept-Encoding", "gzip"))
    assert confined.status == 200, confined
    assert confined.body == static_tree.CONF_CSS
    assert confined.header("content-encoding") is None


@pytest.mark.parametrize("server", ["plain", "strict"])
def test_a_fifo_is_a_404(request: pytest.FixtureRequest, server: str) -> None:
    """Not a regular file: a 404 from the server, strict or not (and no hang
    on opening a pipe nobody writes to: the request would time out)."""
    static: Static = request.getfixturevalue(server)
    calls = AppCalls(static)
    response = get(static.direct(), "/static/fifo")
    assert response.status == 404, response
    assert calls.reached == []
    assert get(static.direct(), "/static/hello.txt").status == 200


def test_strict_answers_404_for_missing_files_and_folders(strict: Static) -> None:
    t = strict.direct()
    for path in ("/static/missing.css", "/static/sub", "/static/sub/", "/static/link-dir"):
        calls = AppCalls(strict)
        response = get(t, path)
        assert response.status == 404, (path, response)
        assert FROM_APP not in response.body
        assert calls.reached == []
    calls = AppCalls(strict)
    post = send(t, "POST", "/static/missing.css", body=b"x")
    assert post.status == 404, post
    assert calls.reached == []
    assert get(t, "/elsewhere").body == b"from the app\nGET\n/elsewhere\n"


# -- matching -----------------------------------------------------------------------


def test_a_prefix_matches_at_a_segment_boundary_only(plain: Static, strict: Static) -> None:
    for static in (plain, strict):
        for path in ("/statichello.txt", "/staticfoo/hello.txt", "/staticsub/inner.css"):
            calls = AppCalls(static)
            response = get(static.direct(), path)
            assert response.body == f"from the app\nGET\n{path}\n".encode(), (path, response)
            assert calls.reached == [path]


def test_the_longest_prefix_wins(plain: Static) -> None:
    t = plain.direct()
    assert get(t, "/static/admin/panel.css").body == static_tree.ADMIN_PANEL
    assert get(t, "/static/hello.txt").body == TYPED["hello.txt"][0]


def test_a_prefix_given_twice_is_searched_in_order(plain: Static) -> None:
    t = plain.direct()
    assert get(t, "/dup/first.txt").body == static_tree.FIRST_ONLY
    assert get(t, "/dup/second.txt").body == static_tree.SECOND_ONLY
    assert get(t, "/dup/both.txt").body == static_tree.FIRST_BOTH
    assert get(t, "/dup/none.txt").body == b"from the app\nGET\n/dup/none.txt\n"


def test_the_query_string_is_ignored(plain: Static, kind: type[Transport]) -> None:
    t = kind(plain.server)
    for query in ("v=3", "x=..%2f..%2fsecret.txt", "", "a=/&b=%00"):
        response = get(t, f"/static/hello.txt?{query}")
        assert response.status == 200, (query, response)
        assert response.body == TYPED["hello.txt"][0]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_other_method_on_a_file_is_405(plain: Static, method: str) -> None:
    calls = AppCalls(plain)
    body = b"x=1" if method in ("POST", "PUT", "PATCH") else b""
    response = send(plain.direct(), method, "/static/style.css", body=body)
    assert response.status == 405, response
    assert response.header("allow") == "GET, HEAD"
    assert calls.reached == []


# -- serve(static=...) ------------------------------------------------------------------

SERVE_STATIC = """
import sys
import rwsgi

def app(environ, start_response):
    body = b"from the app " + environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

rwsgi.serve(app, static={"/assets": sys.argv[1]}, http="127.0.0.1:0", workers=1)
"""


def test_serve_takes_a_static_mapping(start_server: ServerFactory, tree: Tree) -> None:
    server = start_server.argv([sys.executable, "-c", SERVE_STATIC, str(tree.static)])
    hello = server.get("/assets/hello.txt")
    assert hello.status == 200, (hello, server.logs())
    assert hello.body == TYPED["hello.txt"][0]
    assert hello.header("etag") is not None
    assert server.get("/assets/missing.txt").body == b"from the app /assets/missing.txt"
    assert server.get("/static/hello.txt").body == b"from the app /static/hello.txt"


# -- large files -------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_large_file_arrives_whole(plain: Static, kind: type[Transport]) -> None:
    expected = sha256((plain.tree.static / "big.bin").read_bytes())
    response = kind(plain.server).request("GET", "/static/big.bin", timeout=60)
    assert response.status == 200, response.status
    assert response.header("content-length") == str(BIG)
    assert len(response.body) == BIG
    assert sha256(response.body) == expected


def worker_memory(server: Rwsgi) -> dict[str, int]:
    """VmRSS and RssAnon (KiB) of the one worker."""
    (pid,) = server.worker_pids.values()
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon"):
                fields[name] = int(value.split()[0])
    return fields


def slow_download(address: str | tuple[str, int], heads: threading.Barrier) -> str:
    """GET big.bin with a small receive buffer, read slowly; its sha256."""
    family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.settimeout(60)
        sock.connect(address)
        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with sock.makefile("rb") as rfile:
            _, status, _, headers = read_head(rfile)
            assert status == 200, (status, headers)
            heads.wait(60)  # every download under way before any ends
            digest = hashlib.sha256()
            size = 0
            while size < BIG:
                piece = rfile.read(min(64 * 1024, BIG - size))
                assert piece, f"closed after {size} bytes"
                digest.update(piece)
                size += len(piece)
                time.sleep(0.005)
            return digest.hexdigest()


def test_parallel_slow_downloads_use_bounded_memory(plain: Static) -> None:
    server = plain.server
    expected = sha256((plain.tree.static / "big.bin").read_bytes())
    # A first download, so that whatever the server allocates once is there.
    assert sha256(Direct(server).request("GET", "/static/big.bin", timeout=60).body) == expected
    before = worker_memory(server)
    addresses = [server.tcp("http"), server.unix("http")] * 2
    heads = threading.Barrier(len(addresses) + 1)
    peak = dict(before)
    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda a=address: results.append(slow_download(a, heads)), daemon=True
        )
        for address in addresses
    ]
    for thread in threads:
        thread.start()
    heads.wait(60)
    while any(thread.is_alive() for thread in threads):
        now = worker_memory(server)
        peak = {name: max(peak[name], value) for name, value in now.items()}
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert results == [expected] * len(addresses)
    growth = {name: (peak[name] - before[name]) / 1024 for name in before}
    # Anonymous memory is what buffering would cost (4 x 20 MiB if each
    # download were held whole); file-backed pages (an mmap) are the page cache.
    assert growth["RssAnon"] < 16, f"worker memory grew by {growth} MiB"


def test_a_client_that_leaves_half_way_does_not_disturb_the_next(
    plain: Static, kind: type[Transport]
) -> None:
    t = kind(plain.server)
    with t.connect(timeout=30) as conn:
        conn.send(t.encode("GET", "/static/big.bin"))
        got = 0
        while got < BIG // 2:
            piece = conn.rfile.read1(64 * 1024)
            assert piece, "closed early"
            got += len(piece)
    hello = get(t, "/static/hello.txt")
    assert hello.status == 200 and hello.body == TYPED["hello.txt"][0], hello
    whole = t.request("GET", "/static/big.bin", timeout=60)
    assert len(whole.body) == BIG and whole.body == (plain.tree.static / "big.bin").read_bytes()
