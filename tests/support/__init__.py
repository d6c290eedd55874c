"""What the behaviour tests share, by concern; ``conftest.py`` re-exports it.

- ``process``: the rwsgi process harness (``Server``, ``Rwsgi`` for any mix of
  listeners, ``ServerFactory``), readiness from the log, PID helpers;
- ``http``: raw HTTP/1.x on a socket: ``connect``, the one response parser
  (``read_response`` over a buffered file, ``parse_response`` over bytes) into
  the one ``RawResponse`` type, and the one ``read_until_closed``;
- ``uwsgi``: uwsgi packet builders and ``uwsgi_exchange``;
- ``transports``: the same request over direct HTTP/1.1, chunked HTTP/1.1 and
  uwsgi, for tests written once and run over every protocol.

Only the standard library and pytest.
"""
