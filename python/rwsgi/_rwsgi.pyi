"""The Rust extension: the server itself and the objects it hands to apps."""

from collections.abc import Callable
from typing import Any, final

__all__ = ["FileWrapper", "Input", "StartResponse", "__version__", "serve"]

__version__: str

def serve(
    app: Callable[..., Any] | None,
    loader: Callable[[], Callable[..., Any]] | None,
    label: str,
    options: dict[str, Any],
) -> None:
    """Run the master until it stops; blocks. Raises OSError if a listener cannot be bound."""

@final
class FileWrapper:
    """``wsgi.file_wrapper``: a file the server sends from Rust when it has a descriptor."""

    def __new__(cls, filelike: Any, blksize: int = 8192) -> FileWrapper: ...
    def __iter__(self) -> FileWrapper: ...
    def __next__(self) -> Any: ...
    def close(self) -> None: ...

@final
class Input:
    """``wsgi.input``: the request body, already read by the server."""

    def read(self, size: int | None = None) -> bytes: ...
    def readline(self, size: int | None = None) -> bytes: ...
    def readlines(self, hint: int | None = None) -> list[bytes]: ...
    def __iter__(self) -> Input: ...
    def __next__(self) -> bytes: ...
    @staticmethod
    def close() -> None: ...
    @staticmethod
    def readable() -> bool: ...

@final
class StartResponse:
    """The ``start_response`` callable of one request."""

    def __call__(self, status: Any, headers: Any = None, exc_info: Any = None) -> Any: ...
    def write(self, data: bytes) -> None: ...
