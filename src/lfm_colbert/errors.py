"""Exceptions with messages meant for people. The CLI prints them without a traceback."""

from __future__ import annotations


class LfmColbertError(Exception):
    """Base class: every error this package raises on bad input or a broken file."""


class CheckpointError(LfmColbertError):
    """A model checkpoint is missing, incomplete or of the wrong shape."""


class InputError(LfmColbertError, ValueError):
    """Bad user input: texts, arguments, options."""


class IndexFormatError(LfmColbertError):
    """An index directory is missing, corrupted or built with another model."""


class DatasetError(LfmColbertError):
    """An evaluation dataset is missing or malformed."""


class IndexBusyError(IndexFormatError):
    """Another process (or another writer) is writing to the index; try again when it finishes."""


class IndexClosedError(InputError):
    """The `Index` was closed; open it again to use it."""


class StorageError(LfmColbertError):
    """The file system refused: a directory that cannot be created, a read-only index, a full disk."""


class RemoteError(LfmColbertError):
    """An lfm-colbert server answered with an error, or could not be reached (lfm_colbert.client).

    status: the HTTP status (None when there was no answer); code: the server's short error code;
    retry_after: seconds the server asked to wait (429 / 503), else None.
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


class RemoteInputError(RemoteError, InputError):
    """The server refused the request's input (400, 404 for ids, 409, 413, 415, 422): as `InputError` locally."""
