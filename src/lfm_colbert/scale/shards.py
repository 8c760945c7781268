"""Encoded passages as plain sharded files, for bulk loading anywhere (no Ray needed to read them).

    DIR/shards.json          {"format": "lfm-colbert-shards", "version": 1, "model": {...}, "dim": 128}
    DIR/part-<key>.npy       float16 (tokens, dim): every token vector of the shard's passages, in order
    DIR/part-<key>.parquet   one row per passage: id, parent, text, metadata (JSON text), n_tokens,
                             offset (its first row in the .npy)

A shard is one encoding block, written by the worker that encoded it: the .npy first, then the
.parquet, each to a temporary name and renamed, so a shard exists once its .parquet does. `<key>`
is a hash of the block's contents and the model, so a retried or resumed block writes the same
shard again (identical bytes) and never a second copy. Read with pyarrow + numpy:

    >>> for shard in read_shards("shards/"): shard.ids, shard.vectors[0].shape
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError

FORMAT = "lfm-colbert-shards"
VERSION = 1
MARKER = "shards.json"


@dataclass
class Shard:
    name: str
    ids: list[str]
    parents: list[str | None]
    texts: list[str | None]
    metadata: list[dict[str, Any]]
    vectors: list[np.ndarray]  # (T_i, dim) float16, views into the memory-mapped .npy


def shard_key(ids: Sequence[str], texts: Sequence[str | None], parents: Sequence[str | None],
              metadata_json: Sequence[str], fingerprint: str) -> str:
    """Names a block by what it holds and the model that encodes it."""
    h = hashlib.sha256(str(fingerprint).encode())
    for row in zip(ids, texts, parents, metadata_json):
        h.update(json.dumps(row, ensure_ascii=False).encode())
    return h.hexdigest()[:24]


def prepare(directory: str | os.PathLike, model: Mapping[str, Any]) -> Path:
    """Create DIR for shards of `model`, or check that it already holds shards of that model."""
    path = Path(directory)
    marker = path / MARKER
    if marker.is_file():
        have = read_marker(path)["model"]
        for key in ("dim", "variant", "fingerprint"):
            if have.get(key) != model.get(key):
                raise InputError(f"{path} holds shards of another model ({key} {have.get(key)!r}, not "
                                 f"{model.get(key)!r}); write these to a new directory")
        return path
    if path.exists() and (not path.is_dir() or any(not p.name.startswith(".") for p in path.iterdir())):
        raise InputError(f"{path} exists and is not a shard directory (no {MARKER}); give a new or empty directory")
    path.mkdir(parents=True, exist_ok=True)
    _write_atomic(marker, json.dumps({"format": FORMAT, "version": VERSION, "model": dict(model), "dim": model["dim"]},
                                     indent=2, ensure_ascii=False).encode())
    return path


def read_marker(path: Path) -> dict[str, Any]:
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"unreadable {path / MARKER}: {exc}") from None
    if marker.get("format") != FORMAT:
        raise IndexFormatError(f"{path / MARKER} is not an lfm-colbert shard manifest")
    return marker


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def exists(directory: str | os.PathLike, key: str) -> bool:
    return (Path(directory) / f"part-{key}.parquet").is_file()


def doclens_of(directory: str | os.PathLike, key: str) -> list[int]:
    """The token counts of an already written shard (a resumed block need not be encoded again)."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(directory) / f"part-{key}.parquet", columns=["n_tokens"]).column("n_tokens").to_pylist()


def write_shard(directory: str | os.PathLike, key: str, ids: Sequence[str], parents: Sequence[str | None],
                texts: Sequence[str | None], metadata_json: Sequence[str], vectors: Sequence[np.ndarray]) -> str:
    """Write one block's shard (npy, then parquet); returns its name."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(directory)
    doclens = np.array([len(v) for v in vectors], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(doclens)[:-1]]).astype(np.int64)
    buf = io.BytesIO()
    np.save(buf, np.concatenate(vectors).astype(np.float16), allow_pickle=False)
    _write_atomic(path / f"part-{key}.npy", buf.getvalue())
    table = pa.table({
        "id": pa.array(list(ids), pa.string()),
        "parent": pa.array(list(parents), pa.string()),
        "text": pa.array(list(texts), pa.string()),
        "metadata": pa.array(list(metadata_json), pa.string()),
        "n_tokens": pa.array(doclens, pa.int32()),
        "offset": pa.array(offsets, pa.int64()),
    })
    out = pa.BufferOutputStream()
    pq.write_table(table, out)
    _write_atomic(path / f"part-{key}.parquet", out.getvalue().to_pybytes())
    return f"part-{key}"


def read_shards(directory: str | os.PathLike) -> Iterator[Shard]:
    """Every complete shard in DIR, in name order."""
    import pyarrow.parquet as pq

    path = Path(directory)
    marker = read_marker(path)
    for pq_file in sorted(path.glob("part-*.parquet")):
        name = pq_file.stem
        t = pq.read_table(pq_file).to_pydict()
        try:
            flat = np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{path / name}.npy: {exc}") from None
        if flat.ndim != 2 or flat.shape[1] != marker["dim"] or flat.shape[0] != sum(t["n_tokens"]):
            raise IndexFormatError(f"{path / name}.npy has shape {flat.shape}, its .parquet says "
                                   f"({sum(t['n_tokens'])}, {marker['dim']})")
        vectors = [flat[o : o + n] for o, n in zip(t["offset"], t["n_tokens"])]
        yield Shard(name, t["id"], t["parent"], t["text"], [json.loads(m) for m in t["metadata"]], vectors)


def load_shards(directory: str | os.PathLike, target: Any) -> tuple[int, int]:
    """Add every passage of DIR's shards to a store (an Index or QdrantStore, or a spec for open_store);
    returns (added, already there). Ids already in the target are left as they are, so a load that
    was interrupted resumes."""
    from lfm_colbert.stores import open_store

    model = read_marker(Path(directory))["model"]
    store = open_store(target, model) if isinstance(target, (str, os.PathLike)) else target
    added = kept = 0
    try:
        with store.bulk():
            for shard in read_shards(directory):
                there = {d.id for d in store.get(shard.ids) if d is not None}
                rows = [j for j, i in enumerate(shard.ids) if i not in there]
                if rows:
                    store.add_vectors([np.asarray(shard.vectors[j], dtype=np.float32) for j in rows],
                                      ids=[shard.ids[j] for j in rows], texts=[shard.texts[j] for j in rows],
                                      metadata=[shard.metadata[j] for j in rows], parents=[shard.parents[j] for j in rows])
                added += len(rows)
                kept += len(shard.ids) - len(rows)
    finally:
        if store is not target:
            store.close()
    return added, kept
