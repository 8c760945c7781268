"""The `lfm-colbert` command. Each sub-command lives in its own module with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from lfm_colbert.errors import LfmColbertError

# Sub-command modules, in the order `--help` lists them.
_COMMANDS = ["index", "search", "info", "delete", "copy", "convert", "verify", "eval"]
# Optional dependencies (top-level module -> the extra that installs it), for a one-line error.
_EXTRAS = {"torch": "torch", "mlx": "mlx", "faiss": "index", "bm25s": "eval", "Stemmer": "eval",
           "pytrec_eval": "eval", "ranx": "eval", "matplotlib": "eval", "datasets": "hub-data",
           "ray": "ray", "pyarrow": "ray", "qdrant_client": "qdrant", "qdrant_edge": "qdrant-edge"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lfm-colbert",
        description=(
            "Local multilingual search with LiquidAI's LFM2 / LFM2.5 ColBERT retrievers.\n"
            "Models load from the Hugging Face hub, or from a local directory given with --model\n"
            "or the LFM_COLBERT_MODEL environment variable."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LfmColbertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"error: this needs the optional package {exc.name!r}: pip install 'lfm-colbert[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
