"""`lfm-colbert export DIR`: every document back out as JSON Lines, optionally with its vectors."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from lfm_colbert.cli.options import add_filter, index_filter
from lfm_colbert.errors import InputError
from lfm_colbert.index.filter_syntax import SYNTAX

HELP = f"""\
Write the documents of an index (all, or those a --filter keeps) as JSON Lines, in id order:
{{"id", "text", "metadata", "parent"}} per line, to standard output or --output FILE. The file
can be indexed again (`lfm-colbert index FILE`: "parent" becomes metadata there).

--vectors OUT also writes the stored token vectors, so the collection can move to another index
or store without being encoded again: OUT/vectors.npy (all tokens, float16, (tokens, dim)),
OUT/doclens.npy (tokens per document, int64) and OUT/ids.json, in the order of the JSON Lines.
A compressed index gives its decoded vectors (approximate, unless built with --rescore).

{SYNTAX}

examples:
  lfm-colbert export my-index > my-index.jsonl
  lfm-colbert export my-index --output backup.jsonl --vectors backup-vectors/
  lfm-colbert export my-index --filter lang=de | gzip > german.jsonl.gz

  # in Python, back into an index without encoding:
  #   v = np.load("OUT/vectors.npy"); n = np.load("OUT/doclens.npy")
  #   index.add_vectors(np.split(v, np.cumsum(n)[:-1]), ids=json.load(open("OUT/ids.json")), texts=...)
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("export", help="write documents (and optionally vectors) out as JSON Lines",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", metavar="DIR", help="index directory")
    p.add_argument("--format", choices=["jsonl"], default="jsonl", help="jsonl (the default and, for now, the only one)")
    p.add_argument("--output", "-o", metavar="FILE", default=None, help="write here instead of standard output")
    p.add_argument("--vectors", metavar="OUT", default=None, help="also write the token vectors into this new folder")
    add_filter(p)
    p.add_argument("--force", action="store_true", help="replace --output FILE if it exists")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _atomic(path: Path, mode: str) -> Iterator[IO[Any]]:
    """A file that appears at `path` only once complete (temp file, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _NpyStream:
    """Rows appended to an .npy file whose row count is written last (numpy pads the header for that)."""

    def __init__(self, f: IO[bytes], dim: int, dtype: np.dtype) -> None:
        self.f, self.dim, self.dtype, self.rows = f, dim, np.dtype(dtype), 0
        self._header(10**15)  # the longest count: the real one then fits the same 128 bytes

    def _header(self, rows: int) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (rows, self.dim)}
        np.lib.format.write_array_header_1_0(self.f, header)

    def append(self, array: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(array, dtype=self.dtype).tobytes())
        self.rows += len(array)

    def close(self) -> None:
        end = self.f.tell()
        self.f.seek(0)
        self._header(self.rows)
        self.f.seek(end)


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.index import Index

    out_path = Path(args.output) if args.output else None
    if out_path is not None and out_path.exists() and not args.force:
        raise InputError(f"{out_path} exists; give --force to replace it")
    vec_dir = Path(args.vectors) if args.vectors else None
    if vec_dir is not None and vec_dir.exists() and (not vec_dir.is_dir() or any(vec_dir.iterdir())):
        raise InputError(f"{vec_dir} exists and is not an empty folder; give a new one for the vectors")
    index = Index(args.index, create=False, verify=False)
    flt = index_filter(index, args.filter)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(_atomic(out_path, "w")) if out_path else sys.stdout
        stream, ids, doclens = None, [], []
        if vec_dir is not None:
            vec_dir.mkdir(parents=True, exist_ok=True)
            stream = _NpyStream(stack.enter_context(_atomic(vec_dir / "vectors.npy", "wb")), index.manifest["dim"], np.float16)
        n, after = 0, None
        while page := index.list(filter=flt, limit=1000, after=after):
            for doc in page:
                out.write(json.dumps(doc.to_dict(), ensure_ascii=False) + "\n")
            if stream is not None:
                for doc, v in zip(page, index.vectors([d.id for d in page])):
                    stream.append(v)
                    ids.append(doc.id)
                    doclens.append(len(v))
            n += len(page)
            after = page[-1].id
        if stream is not None:
            stream.close()
            np.save(vec_dir / "doclens.npy", np.asarray(doclens, dtype=np.int64))
            (vec_dir / "ids.json").write_text(json.dumps(ids, ensure_ascii=False) + "\n", encoding="utf-8")
    where = f" to {out_path}" if out_path else ""
    print(f"exported {n} documents{where}" + (f", vectors to {vec_dir}" if vec_dir else ""), file=sys.stderr)
    index.close()
    return 0
