"""The Rust extension: the server itself and the objects it hands to apps."""

from collections.abc import Callable
from typing import Any, final

__all__ = [
    "ErrorStream",
    "FileWrapper",
    "Input",
    "RequestTimeout",
    "StartResponse",
    "__version__",
    "log_level",
    "log_line",
    "serve",
]

__version__: str

def serve(
    app: Callable[..., Any] | None,
    loader: Callable[[], Callable[..., Any]] | None,
    label: str,
    options: dict[str, Any],
) -> None:
    """Run the master until it stops; blocks. Raises OSError if a listener cannot be bound."""

def log_line(levelno: int, source: str, message: str) -> None:
    """Write ``message`` from ``source`` to the server log at a ``logging`` level number."""

def log_level() -> int:
    """The least ``logging`` level the server log writes (``--log-level``)."""

@final
class ErrorStream:
    """``wsgi.errors``: each complete line written is an ERROR line of the server log."""

    def write(self, text: str) -> int: ...
    def writelines(self, lines: Any) -> None: ...
    def flush(self) -> None: ...
    @staticmethod
    def isatty() -> bool: ...
    @staticmethod
    def writable() -> bool: ...

class RequestTimeout(BaseException):
    """Raised in a thread whose request ran longer than ``--harakiri`` (the client got a 504)."""

@final
class FileWrapper:
    """``wsgi.file_wrapper``: a file the server sends from Rust when it has a descriptor."""

    def __new__(cls, filelike: Any, blksize: int = 8192) -> FileWrapper: ...
    def __iter__(self) -> FileWrapper: ...
    def __next__(self) -> Any: ...
    def close(self) -> None: ...

@final
class Input:
    """``wsgi.input``: the request body, already read by the server (in memory or spooled)."""

    def read(self, size: int | None = None) -> bytes: ...
    def readline(self, size: int | None = None) -> bytes: ...
    def readlines(self, hint: int | None = None) -> list[bytes]: ...
    def __iter__(self) -> Input: ...
    def __next__(self) -> bytes: ...
    def seek(self, offset: int, whence: int = 0) -> int: ...
    def tell(self) -> int: ...
    @staticmethod
    def close() -> None: ...
    @staticmethod
    def readable() -> bool: ...
    @staticmethod
    def seekable() -> bool: ...

@final
class StartResponse:
    """The ``start_response`` callable of one request."""

    def __call__(self, status: Any, headers: Any = None, exc_info: Any = None) -> Any: ...
    def write(self, data: bytes) -> None: ...
