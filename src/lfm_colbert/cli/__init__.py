"""The `lfm-colbert` command. Each sub-command lives in its own module with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import warnings

from lfm_colbert import __version__
from lfm_colbert.errors import LfmColbertError

# Sub-command modules, in the order `--help` lists them.
_COMMANDS = ["index", "search", "rerank", "get", "list", "export", "info", "delete", "copy", "convert", "verify", "eval",
             "serve", "mcp"]
# Optional dependencies (top-level module -> the extra that installs it), for a one-line error.
_EXTRAS = {"torch": "torch", "mlx": "mlx", "faiss": "index", "bm25s": "eval", "Stemmer": "eval",
           "pytrec_eval": "eval", "ranx": "eval", "matplotlib": "eval", "datasets": "hub-data",
           "selectolax": "html", "pypdf": "pdf", "pyarrow": "parquet", "scipy": "pool",
           "langchain_core": "langchain", "llama_index": "llamaindex", "haystack": "haystack", "mcp": "mcp",
           "fastapi": "serve", "uvicorn": "serve", "starlette": "serve", "httpx": "serve",
           "ray": "ray", "qdrant_client": "qdrant", "qdrant_edge": "qdrant-edge"}


class UsageError(Exception):
    """A command line argparse cannot parse; main() prints it on one line."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see {prog} --help)")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one `error: ...` line (exit 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lfm-colbert",
        description=(
            "Local multilingual search with LiquidAI's LFM2 / LFM2.5 ColBERT retrievers.\n"
            "Models load from the Hugging Face hub, or from a local directory given with --model\n"
            "or the LFM_COLBERT_MODEL environment variable (which also points an existing index\n"
            "at a local copy of its model). Every command has --help with examples; --json makes a\n"
            "command print JSON on standard output.\n\n"
            "examples:\n"
            "  lfm-colbert index notes/ --index my-index\n"
            "  lfm-colbert search my-index \"where do penguins live?\" --filter lang=en\n"
            "  lfm-colbert get my-index notes/penguins.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"lfm-colbert {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"lfm_colbert.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lfm_colbert.cli.{name}":
                continue  # that command is not part of this build
            raise
        module.register(subparsers)
    return parser


def _safe_streams() -> None:
    """Results hold text in any script. Windows pipes default to the ANSI code page, so write UTF-8
    there (what JSON readers expect); elsewhere a non-UTF-8 locale escapes what it cannot show."""
    for stream in (sys.stdout, sys.stderr):
        if not hasattr(stream, "reconfigure"):  # replaced by a test harness or an embedding app
            continue
        if os.name == "nt":
            stream.reconfigure(encoding="utf-8")
        else:
            stream.reconfigure(errors="backslashreplace")


def _plain_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    return f"warning: {message}\n"  # a user needs the message, not our source line


def main(argv: list[str] | None = None) -> int:
    _safe_streams()
    warnings.formatwarning = _plain_warning
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _error(str(exc))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a full disk or a closed pipe is reported like any error
        return code
    except LfmColbertError as exc:
        return _error(str(exc))
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        return _error(f"this needs the optional package {exc.name!r}: pip install 'lfm-colbert[{extra}]'")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output left (`... | head -1`): stop quietly, as `yes | head -1` does.
        _drop_stdout()
        return 128 + 13  # SIGPIPE
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _drop_stdout()
            return 128 + 13
        # The file system refused (a full disk, a read-only folder): one line, as for any error.
        where = f" ({exc.filename})" if exc.filename else ""
        return _error(f"{exc.strerror or exc}{where}", drop_stdout=True)


def _error(message: str, drop_stdout: bool = False) -> int:
    if drop_stdout:
        _drop_stdout()
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _drop_stdout() -> None:
    """Send what is still buffered for stdout nowhere, so the interpreter's own flush at exit cannot
    fail a second time (and print a traceback)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test harness)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
