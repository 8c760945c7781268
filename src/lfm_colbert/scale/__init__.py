"""Scaling out the expensive part, encoding: Ray (lfm_colbert.scale.ray) and sharded files (.shards).

    >>> from lfm_colbert.scale import index_sources
    >>> index_sources(["corpus/"], "my-index", address="auto")                     # Ray, into an index
    >>> index_sources(["corpus/"], "qdrant+http://head:6333/docs", address="auto")  # ... or a Qdrant collection
    >>> index_sources(["corpus/"], None, shards="/nfs/shards", model="LiquidAI/LFM2.5-ColBERT-350M")

`lfm-colbert index SOURCES... --index DIR --ray auto|ADDRESS` is the same job from the command line.
Importing this package does not import Ray.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Sequence

__all__ = ["add_ray_options", "index_sources"]


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """--ray and its companions, for `lfm-colbert index`."""
    g = p.add_argument_group("distributed encoding (needs lfm-colbert[ray])")
    g.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="encode on a Ray cluster: 'auto' joins the one this machine belongs to ($RAY_ADDRESS, or "
                        "`ray start`) or starts a local one; 'local' always starts one; or HEAD:6379")
    g.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="encoder actors, each loading the model once (default: one per GPU, else one per node)")
    g.add_argument("--ray-cpus", type=float, default=None, metavar="C",
                   help="CPUs per actor, fractions allowed (default: its node's CPUs less half a CPU, shared by the "
                        "actors on that node; 1 beside a GPU)")
    g.add_argument("--ray-gpus", type=float, default=None, metavar="G", help="GPUs per actor (default: 1 if there are GPUs)")
    g.add_argument("--shards", metavar="DIR", default=None,
                   help="with --ray: the actors also write each encoded block as files (parquet + npy) in DIR, "
                        "which every node must reach (shared storage), for bulk loading elsewhere")


def index_sources(
    sources: Sequence[str | os.PathLike],
    index: Any = None,
    *,
    model: Any = None,
    shards: str | os.PathLike | None = None,
    address: str | None = "auto",
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float | None = None,
    commit_every: int = 512,
    batch_size: int = 32,
    max_tokens: int | None = None,
    overlap: int = 64,
    force: bool = False,
    backend: str = "auto",
    stall_timeout: float | None = None,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Read and split `sources` as `lfm-colbert index` does and encode them on Ray, into `index` (a
    directory, a `qdrant+...` spec, or an open Index / QdrantStore), into `shards` files, or both.
    Passages already stored unchanged are skipped (unless `force`), so a rerun resumes.
    Returns {"passages": encoded, "documents": read, "skipped": unchanged passages, "nodes": [...]}."""
    from tqdm.auto import tqdm

    from lfm_colbert.errors import InputError
    from lfm_colbert.ingest import passage_budget, read_documents, split_passages
    from lfm_colbert.scale.ray import RayFeed, commit_runs, encode_blocks, plan_blocks
    from lfm_colbert.stores import open_store

    if index is None and shards is None:
        raise InputError("give an index, shards, or both")
    for name, value in (("commit_every", commit_every), ("batch_size", batch_size), ("max_tokens", max_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name} must be a positive integer, not {value!r}")
    docs = list(read_documents(list(sources)))
    store = open_store(index, model, backend=backend) if isinstance(index, (str, os.PathLike)) else index
    try:
        if store is not None:
            m = store.model
        else:
            from lfm_colbert.encoder import ColBERT

            m = model if model is not None and not isinstance(model, (str, os.PathLike)) else ColBERT(model, backend=backend)
        budget = passage_budget(m)
        if max_tokens is not None and max_tokens > budget:
            raise InputError(f"max_tokens {max_tokens} is more than a document of this model holds ({budget} tokens)")
        budget = max_tokens or budget
        passages = list(split_passages(docs, budget, min(overlap, budget // 2), tokenizer=m.tokenizer))
        same = set() if force or store is None else store.unchanged(
            [p.id for p in passages], [p.text for p in passages], [p.metadata for p in passages], [p.parent for p in passages])
        todo = [p for p in passages if p.id not in same]
        options = dict(address=address, actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                       shards=shards, stall_timeout=stall_timeout, backend=backend)
        bar = tqdm(total=len(todo), desc="encoding", unit="passage", disable=None if show_progress is None else not show_progress)
        nodes: set[str] = set()
        if store is None:
            for got in encode_blocks(plan_blocks(todo, commit_every, batch_size), m, batch_size=batch_size,
                                     return_vectors=False, **options):
                nodes.add(got.node)
                bar.update(len(got.ids))
        else:
            feed = RayFeed(store, todo, commit_every=commit_every, batch_size=batch_size, **options)
            try:
                with store.bulk():
                    for chunk in commit_runs(todo, commit_every):
                        feed.add([p.text for p in chunk], ids=[p.id for p in chunk], metadata=[p.metadata for p in chunk],
                                 parents=[p.parent for p in chunk], upsert=True, progress_bar=bar)
            finally:
                if feed._stream is not None:
                    feed._stream.close()
            nodes = feed.nodes
        bar.close()
        return {"passages": len(todo), "documents": len(docs), "skipped": len(same), "nodes": sorted(nodes)}
    finally:
        if store is not None and store is not index:
            store.close()
