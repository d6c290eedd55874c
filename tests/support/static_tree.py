"""A fixture folder for the static-file and X-Accel-Redirect tests, built in a
temporary directory with content the tests know byte for byte.

``build(root)`` lays out::

    root/secret.txt                 next to the folders: what traversal must never reach
    root/outside/outside.txt        a file outside every mapped folder
    root/outside/dir/deep.txt       a folder outside, reached by a link
    root/static/                    the main --static-map folder (``Tree.static``)
        hello.txt style.css app.js module.mjs data.json logo.svg page.html
        notes.xml web.config doc.pdf font.woff2
        blob.rwsgiunknown           an extension no MIME table knows
        app.3f2a9c1b8e7d.css        Django's hash: 12 lowercase hex digits
        app.3f2a9c1b8e7.css         11 digits: no immutable
        app.3f2a9c1b8e7d0.css       13 digits: no immutable
        app.3F2A9C1B8E7D.css        12 upper-case digits: no immutable
        one.bin big.bin             1 MiB and 20 MiB of ``pattern()``
        x.css x.css.br x.css.zst x.css.gz   siblings with distinct text
        only.css only.css.gz        one sibling only
        mutable.txt                 rewritten by the ETag test
        sub/inner.css               a subfolder (and the folder itself)
        admin/panel.css             what the longer prefix /static/admin must hide
        link-inside.css   -> sub/inner.css (relative link)
        link-outside.txt  -> root/outside/outside.txt
        link-dir          -> root/outside/dir
        fifo                        a named pipe: never opened by a server
        conf.css conf.css.gz -> root/outside/outside.txt   a sibling that leaves
        odd.css odd.css.br/ odd.css.gz(fifo)             siblings that are no files
    root/static-link -> static      a mapped folder that is itself a link
    root/admin/panel.css            the folder of the longer prefix /static/admin
    root/first/ root/second/        one prefix given twice, searched in order
    root/protected/                 the --internal-map folder (report.pdf, doc.txt,
                                    sub/file.pdf, styled.css + .gz, big.bin)

No real compression: a test tells which representation was sent by its text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
HASHED = "app.3f2a9c1b8e7d.css"
NEAR_MISSES = ("app.3f2a9c1b8e7.css", "app.3f2a9c1b8e7d0.css", "app.3F2A9C1B8E7D.css")
SECRET = b"TOP-SECRET: this file lies outside every mapped folder\n"

# name -> (content, the Content-Type the spec gives it, charset included): the
# type is mime_guess's first guess (2.0.5: .js is text/javascript, .xml text/xml).
TYPED: dict[str, tuple[bytes, str]] = {
    "hello.txt": (b"hello, static world\n", "text/plain; charset=utf-8"),
    "style.css": (b"body { color: black; }\n", "text/css; charset=utf-8"),
    "app.js": (b"console.log('static');\n", "text/javascript; charset=utf-8"),
    "module.mjs": (b"export const a = 1;\n", "application/javascript; charset=utf-8"),
    "data.json": (b'{"static": true}\n', "application/json; charset=utf-8"),
    "logo.svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n',
        "image/svg+xml; charset=utf-8",
    ),
    "page.html": (b"<!doctype html><title>static</title>\n", "text/html; charset=utf-8"),
    "notes.xml": (b"<?xml version='1.0'?><notes/>\n", "text/xml; charset=utf-8"),
    "web.config": (b"<?xml version='1.0'?><configuration/>\n", "application/xml; charset=utf-8"),
    "doc.pdf": (b"%PDF-1.4 not really\n", "application/pdf"),
    "font.woff2": (b"wOF2 not really\n", "font/woff2"),
    "blob.rwsgiunknown": (b"\x00\x01unknown kind\xff", "application/octet-stream"),
}

# The precompressed siblings of x.css: each says which one it is.
X_CSS = b"/* x.css: the identity representation */\n"
SIBLINGS = {
    "br": b"BROTLI-BYTES of x.css\n",
    "zst": b"ZSTANDARD-BYTES of x.css, a little longer\n",
    "gz": b"GZIP-BYTES of x.css, longer again than the others\n",
}
# Content-Encoding for each sibling suffix.
ENCODING = {"br": "br", "zst": "zstd", "gz": "gzip"}
ONLY_CSS = b"/* only.css: identity */\n"
ONLY_CSS_GZ = b"GZIP-BYTES of only.css\n"
CONF_CSS = b"/* conf.css: its .gz is a link out of the folder */\n"
ODD_CSS = b"/* odd.css: its .br is a folder, its .gz a fifo */\n"

INNER_CSS = b"/* sub/inner.css */\n"
OUTSIDE = b"outside.txt: a file outside the folder, reached by a link\n"
DEEP = b"deep.txt: in a folder outside, reached by a folder link\n"
ADMIN_PANEL = b"/* admin/panel.css from the admin folder */\n"
FIRST_ONLY = b"only in the first folder\n"
FIRST_BOTH = b"both: the first folder's copy\n"
SECOND_BOTH = b"both: the second folder's copy\n"
SECOND_ONLY = b"only in the second folder\n"

REPORT_PDF = b"%PDF-1.4 a protected report, not a real pdf\n" + bytes(range(256)) * 4
DOC_TXT = b"a protected text document\n"
SUB_FILE_PDF = b"%PDF-1.4 protected/sub/file.pdf\n"
STYLED_CSS = b"/* protected styled.css */\n"
STYLED_CSS_GZ = b"GZIP-BYTES of protected styled.css\n"


def pattern(size: int) -> bytes:
    """``size`` bytes whose every 1 KiB block names its own index: a wrong
    offset or a lost piece shows in a diff, and equal blocks never hide one."""
    cycle = bytes(range(256)) * 5
    blocks = bytearray()
    index = 0
    while len(blocks) < size:
        head = f"[block {index:08d}]".encode()
        start = index % 256
        blocks += head + cycle[start : start + 1024 - len(head)]
        index += 1
    return bytes(blocks[:size])


@dataclass(frozen=True)
class Tree:
    """Where ``build`` put everything."""

    root: Path
    static: Path
    admin: Path
    first: Path
    second: Path
    protected: Path
    outside: Path
    secret: Path
    static_link: Path

    def static_args(self) -> list[str]:
        """The --static-map flags every static server of the tests takes."""
        return [
            "--static-map",
            f"/static={self.static}",
            "--static-map",
            f"/static/admin={self.admin}",
            "--static-map",
            f"/dup={self.first}",
            "--static-map",
            f"/dup={self.second}",
        ]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build(root: Path) -> Tree:
    """Lay the folder out under ``root`` (an empty directory) and say where."""
    tree = Tree(
        root=root,
        static=root / "static",
        admin=root / "admin",
        first=root / "first",
        second=root / "second",
        protected=root / "protected",
        outside=root / "outside",
        secret=root / "secret.txt",
        static_link=root / "static-link",
    )
    _write(tree.secret, SECRET)
    _write(tree.outside / "outside.txt", OUTSIDE)
    _write(tree.outside / "dir" / "deep.txt", DEEP)

    static = tree.static
    for name, (content, _) in TYPED.items():
        _write(static / name, content)
    _write(static / HASHED, b"/* hashed by collectstatic */\n")
    for name in NEAR_MISSES:
        _write(static / name, b"/* not quite a hash */\n")
    _write(static / "one.bin", pattern(MIB))
    _write(static / "big.bin", pattern(20 * MIB))
    _write(static / "x.css", X_CSS)
    for suffix, content in SIBLINGS.items():
        _write(static / f"x.css.{suffix}", content)
    _write(static / "only.css", ONLY_CSS)
    _write(static / "only.css.gz", ONLY_CSS_GZ)
    _write(static / "mutable.txt", b"version one\n")
    _write(static / "sub" / "inner.css", INNER_CSS)
    (static / "link-inside.css").symlink_to(Path("sub") / "inner.css")
    (static / "link-outside.txt").symlink_to(tree.outside / "outside.txt")
    (static / "link-dir").symlink_to(tree.outside / "dir", target_is_directory=True)
    os.mkfifo(static / "fifo")
    _write(static / "conf.css", CONF_CSS)
    (static / "conf.css.gz").symlink_to(tree.outside / "outside.txt")
    _write(static / "odd.css", ODD_CSS)
    (static / "odd.css.br").mkdir()
    os.mkfifo(static / "odd.css.gz")
    tree.static_link.symlink_to(static, target_is_directory=True)

    _write(static / "admin" / "panel.css", b"/* wrong: the /static folder's copy */\n")
    _write(tree.admin / "panel.css", ADMIN_PANEL)
    _write(tree.first / "first.txt", FIRST_ONLY)
    _write(tree.first / "both.txt", FIRST_BOTH)
    _write(tree.second / "both.txt", SECOND_BOTH)
    _write(tree.second / "second.txt", SECOND_ONLY)

    protected = tree.protected
    _write(protected / "report.pdf", REPORT_PDF)
    _write(protected / "doc.txt", DOC_TXT)
    _write(protected / "sub" / "file.pdf", SUB_FILE_PDF)
    _write(protected / "styled.css", STYLED_CSS)
    _write(protected / "styled.css.gz", STYLED_CSS_GZ)
    return tree
