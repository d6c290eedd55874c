"""The smallest WSGI app: ``rwsgi examples.hello:app --http 127.0.0.1:8000``."""


def app(environ, start_response):
    body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
