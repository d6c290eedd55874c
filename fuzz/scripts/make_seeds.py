#!/usr/bin/env python3
"""Write the seed corpus: uwsgi packets shaped like what nginx's uwsgi_pass sends,
chunked request bodies, and HTTP/1.1 request heads.

Run from anywhere: python3 fuzz/scripts/make_seeds.py
Writes corpus/uwsgi_packet/seed-* (whole packets), corpus/uwsgi_vars/seed-*
(the same vars blocks without the header), corpus/http_chunked/seed-* and
corpus/http_head/seed-*.
"""

import pathlib
import struct

FUZZ = pathlib.Path(__file__).resolve().parent.parent


def block(pairs):
    out = bytearray()
    for key, value in pairs:
        out += struct.pack("<H", len(key)) + key
        out += struct.pack("<H", len(value)) + value
    return bytes(out)


def packet(modifier1, vars_block, body=b""):
    return struct.pack("<BHB", modifier1, len(vars_block), 0) + vars_block + body


def nginx_params(method, uri, query=b"", content_type=b"", content_length=b"", extra=()):
    """The pairs of nginx's stock uwsgi_params, in its order, then HTTP_* headers."""
    path = uri.split(b"?", 1)[0]
    return [
        (b"QUERY_STRING", query),
        (b"REQUEST_METHOD", method),
        (b"CONTENT_TYPE", content_type),
        (b"CONTENT_LENGTH", content_length),
        (b"REQUEST_URI", uri),
        (b"PATH_INFO", path),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"53412"),
        (b"SERVER_PORT", b"8080"),
        (b"SERVER_NAME", b"localhost"),
        (b"HTTP_HOST", b"localhost:8080"),
        (b"HTTP_USER_AGENT", b"curl/8.5.0"),
        (b"HTTP_ACCEPT", b"*/*"),
        *extra,
    ]


seeds = {}

get = block(nginx_params(b"GET", b"/hello?name=world&x=%20y", query=b"name=world&x=%20y"))
seeds["get"] = (packet(0, get), get)

body = b'{"answer": 42}'
post = block(
    nginx_params(
        b"POST",
        b"/api/items",
        content_type=b"application/json",
        content_length=str(len(body)).encode(),
        extra=[
            (b"HTTP_CONTENT_TYPE", b"application/json"),
            (b"HTTP_X_FORWARDED_FOR", b"10.0.0.1, 10.0.0.2"),
        ],
    )
)
seeds["post-with-body"] = (packet(0, post, body), post)

# uwsgi_modifier1 30 with SCRIPT_NAME set by `uwsgi_param SCRIPT_NAME /app;`.
mounted = block(
    [
        *nginx_params(b"GET", b"/app/static/a%20b.css"),
        (b"SCRIPT_NAME", b""),
        (b"SCRIPT_NAME", b"/app"),
    ]
)
seeds["modifier30-script-name"] = (packet(30, mounted), mounted)

# HTTPS request with a long cookie and non-ASCII path bytes.
https = block(
    nginx_params(
        b"GET",
        b"/caf\xc3\xa9",
        extra=[(b"HTTPS", b"on"), (b"HTTP_COOKIE", b"session=" + b"a" * 600)],
    )
)
seeds["https-cookie"] = (packet(0, https), https)

seeds["empty-vars"] = (packet(0, b""), b"")

# Malformed: datasize larger than what arrived, a cut length field, an empty key.
seeds["truncated"] = (packet(0, get)[: 4 + 50], get[:50])
seeds["empty-key"] = (packet(0, b"\x00\x00\x00\x00"), b"\x00\x00\x00\x00")
seeds["unsupported-modifier"] = (packet(5, block([(b"K", b"v")])), block([(b"K", b"v")]))

for name, (whole, vars_only) in seeds.items():
    (FUZZ / "corpus" / "uwsgi_packet" / f"seed-{name}").write_bytes(whole)
    (FUZZ / "corpus" / "uwsgi_vars" / f"seed-{name}").write_bytes(vars_only)
print(f"wrote {len(seeds)} seeds per target")

# http_chunked: one byte seeding the read sizes, then a chunked body (RFC 9112 §7.1).
chunked = {
    "one-chunk": b"5\r\nhello\r\n0\r\n\r\n",
    "empty": b"0\r\n\r\n",
    "extensions": b'3;a=b ; q="x \\" y"\r\nabc\r\nA;n\r\n0123456789\r\n0;last\r\n\r\n',
    "trailers": b"2\r\nok\r\n0\r\nX-Sum: abc\r\nEmpty:\r\n\r\n",
    "pipelined": b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "bare-lf": b"5\nhello\n0\n\n",
    "space-after-size": b"5 \r\nhello\r\n0\r\n\r\n",
    "obs-fold": b"0\r\nX: a\r\n folded\r\n\r\n",
}
for name, body in chunked.items():
    seed = FUZZ / "corpus" / "http_chunked" / f"seed-{name}"
    seed.parent.mkdir(exist_ok=True)
    seed.write_bytes(b"\x07" + body)
print(f"wrote {len(chunked)} http_chunked seeds")

# http_head: the start of a connection, as curl, browsers and proxies send it
# (RFC 9112), each accepted form once, then the refusals the codec names.
many = b"".join(b"X-%d: v\r\n" % index for index in range(101))
heads = {
    "get-pipelined": b"GET /a/b?x=1 HTTP/1.1\r\nHost: h:80\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n\r\nGET /next HTTP/1.1\r\n",
    "post-length": b"POST /api HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
    b'Content-Length: 14\r\n\r\n{"answer": 42}',
    "chunked-continue": b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
    b"Expect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "absolute-form": b"GET http://example.com:8080/p%20q?a=b#frag HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-no-path": b"GET https://example.com?q HTTP/1.1\r\n\r\n",
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "http10-keep-alive": b"HEAD /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "connection-close": b"GET / HTTP/1.1\r\nConnection: Upgrade, close\r\nX-Empty:\r\n\r\n",
    "lf-only": b"GET / HTTP/1.1\nHost: h\n\n",
    "utf8-obs-text": b"GET /caf\xc3\xa9 HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n",
    "partial": b"GET /slow HTTP/1.1\r\nHost: h\r\nX-Pad: ",
    # Refused: each is one status.
    "smuggling": b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "two-lengths": b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "gzip": b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "expect-magic": b"PUT / HTTP/1.1\r\nExpect: magic\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "http2": b"GET / HTTP/2.0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
    "too-many-fields": b"GET / HTTP/1.1\r\n" + many + b"\r\n",
    "too-large": b"GET / HTTP/1.1\r\nCookie: " + b"a" * (64 * 1024) + b"\r\n\r\n",
}
for name, head in heads.items():
    seed = FUZZ / "corpus" / "http_head" / f"seed-{name}"
    seed.parent.mkdir(exist_ok=True)
    seed.write_bytes(head)
print(f"wrote {len(heads)} http_head seeds")
