"""Options that several sub-commands share, and what they mean."""

from __future__ import annotations

import argparse
from typing import Any

from lfm_colbert.errors import InputError


def add_placement(p: argparse.ArgumentParser) -> None:
    """--backend and --device: where the model runs."""
    p.add_argument("--backend", choices=["auto", "torch", "mlx"], default="auto",
                   help="auto (default): MLX on Apple Silicon, else PyTorch")
    p.add_argument("--device", default=None,
                   help="PyTorch device: cpu, cuda, cuda:1, mps (default: CUDA when present, else the CPU)")


def add_filter(p: argparse.ArgumentParser) -> None:
    p.add_argument("--filter", "-f", action="append", default=[], metavar="FILTER",
                   help="metadata filter such as lang=en or 'year>=2020 AND lang!=de' (repeatable: all must hold; "
                        "see below)")


def add_json(p: argparse.ArgumentParser, what: str = "the results") -> None:
    """--json means one thing everywhere: print `what` as JSON on standard output, nothing else there."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def index_filter(index: Any, items: list[str]) -> dict[str, Any] | None:
    """The --filter options as one filter, refused when it names a key no document of `index` has
    (a typo would otherwise just find nothing)."""
    from lfm_colbert.index.filter_syntax import parse_filters
    from lfm_colbert.index.filters import filter_keys

    flt = parse_filters(items)
    if flt is None:
        return None
    for key in sorted(filter_keys(flt)):
        if not index.list(filter={key: {"$exists": True}}, limit=1):
            known = index.metadata_keys()
            listed = ", ".join(f"{k} ({n})" for k, n in sorted(known.items(), key=lambda kv: -kv[1])[:12])
            raise InputError(f"no document has the metadata key {key!r}; "
                             + (f"keys (documents): {listed}" if known else "the index holds no metadata"))
    return flt
