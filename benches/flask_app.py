"""The Flask app of the ``flask_hello`` scenario: ``GET /`` -> ``Hello, world!``.

A plain Flask app as its tutorial writes one: what a server costs under the
smallest real framework request (routing, a request context, a Response).
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello, world!"
