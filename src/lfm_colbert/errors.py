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
