"""Distributed encoding on Ray: the passages `lfm-colbert index` would encode, encoded by a Ray Data actor
pool and streamed back, in order, into the same index writer.

    >>> from lfm_colbert.scale.ray import index_sources
    >>> index_sources(["corpus/"], "my-index", address="auto")      # join a cluster, or start a local one
    >>> index_sources(["corpus/"], None, shards="/nfs/shards")      # sharded files only, for bulk loading

Each actor loads the model once (a GPU per actor where the cluster has GPUs, a fractional CPU share
otherwise) and encodes one block per call. A block is exactly one encode call of `Index.add` (the
same passages, in the same order, with the same batch size), so the vectors, ids and search
results are those of a local `lfm-colbert index`. The driver commits every `commit_every` passages
as the local command does, so an interrupted job resumes where it stopped; an actor that dies is
restarted by Ray and its block retried, and the driver takes each block exactly once.

Traps on small machines (../shared/docs/scale-and-serve.md §1): actors that ask for whole CPUs on
a 2-CPU cluster next to any other stage wait forever, so actor shares here are fractional and the
job stops with an error after `stall_timeout` seconds without a result instead of hanging.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from lfm_colbert.errors import InputError, LfmColbertError
from lfm_colbert.scale import shards as _shards
from lfm_colbert.sync import commit_runs  # noqa: F401  (the CLI's commits; re-exported)

# Index.add encodes max(batch_size, 256) documents per model.encode call. Blocks are the same calls:
# LFM2.5's centred convolution sees the padding of each length-sorted batch, so another grouping
# would give (slightly) other vectors.
ENCODE_STEP = 256
STALL_TIMEOUT = 1800.0  # seconds without any result before the job is declared stuck
LOCAL_OBJECT_STORE = 1 << 30  # a local cluster's object store: blocks stream through it, they do not pile up
KILL_ENV = "LFM_COLBERT_RAY_KILL_AT"  # test hook: "BLOCK:MARKER" makes the actor given BLOCK kill itself once


class RayJobError(LfmColbertError):
    """The Ray cluster could not be reached, or the encoding job failed or stalled."""


@dataclass
class Encoded:
    block: int
    ids: list[str]
    vectors: list[np.ndarray] | None  # (T_i, dim) float32 each; None when only shards were written
    node: str
    pid: int


def plan_blocks(passages: Sequence[Any], commit_every: int, batch_size: int) -> list[list[Any]]:
    """The encode calls a local run makes: each commit run cut every max(batch_size, 256) passages."""
    step = max(batch_size, ENCODE_STEP)
    return [run[s : s + step] for run in commit_runs(passages, commit_every) for s in range(0, len(run), step)]


def connect(address: str | None = "auto", object_store_memory: int | None = None) -> bool:
    """Join the Ray cluster at `address` ("auto": the one this machine belongs to, or $RAY_ADDRESS; if
    there is none, start a local one; "local": always a new local one). Returns whether this call
    connected (so the caller disconnects at the end); False when Ray was initialised already."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    if str(address or os.environ.get("RAY_ADDRESS", "")).startswith("ray://"):
        raise RayJobError("Ray Data does not run over Ray Client (ray://): run lfm-colbert on a node of the cluster "
                          "(--ray auto, or --ray HEAD:6379), or submit it there with `ray job submit`")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    local = {"include_dashboard": False, "object_store_memory": object_store_memory or LOCAL_OBJECT_STORE, **quiet}
    if address in (None, "local"):
        ray.init(**local)
        return True
    try:
        ray.init(address=address, **quiet)
    except ConnectionError as exc:
        if address != "auto" or os.environ.get("RAY_ADDRESS"):
            raise RayJobError(f"cannot join the Ray cluster at {os.environ.get('RAY_ADDRESS') or address}: {exc}. "
                              "Ray >= 2.59 needs RAY_AUTH_MODE=token and the cluster's token on every node and "
                              "client (README, 'Scaling out')") from None
        ray.init(**local)
    return True


def plan_actors(actors: int | None, cpus: float | None, gpus: float | None) -> tuple[int, float, float, int]:
    """(actors, CPUs per actor, GPUs per actor, torch threads per actor) for the connected cluster.

    Defaults: one actor per GPU where there are GPUs, else one per node; a CPU actor asks for its
    node's CPUs less half a CPU (shared by the actors planned per node), never a whole node, so
    Ray Data always has room for its own tasks; a job that cannot fit is refused instead of left
    waiting forever."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total_cpu = sum(r.get("CPU", 0.0) for r in nodes)
    total_gpu = sum(r.get("GPU", 0.0) for r in nodes)
    cpu_nodes = [r.get("CPU", 0.0) for r in nodes if r.get("CPU", 0.0) > 0]
    if not cpu_nodes:
        raise RayJobError("the Ray cluster has no CPUs")
    if gpus is None:
        gpus = 1.0 if total_gpu >= 1 else 0.0
    if actors is None:
        actors = int(total_gpu // gpus) if gpus else len(cpu_nodes)
    if actors < 1:
        raise InputError(f"the number of Ray actors must be at least 1, not {actors}")
    if cpus is None:
        per_node = math.ceil(actors / len(cpu_nodes))
        cpus = min(1.0, min(cpu_nodes) / 2) if gpus else max(0.25, (min(cpu_nodes) - 0.5) / per_node)
    if cpus <= 0 or gpus < 0:
        raise InputError("CPUs per actor must be positive and GPUs per actor not negative")
    # Actors are placed whole on nodes: count how many fit on each (Ray would wait forever for the rest).
    fit = sum(min(int(r.get("CPU", 0.0) / cpus + 1e-9), int(r.get("GPU", 0.0) / gpus + 1e-9) if gpus else actors)
              for r in nodes)
    if fit < actors:
        raise RayJobError(f"{actors} actors of {cpus:g} CPUs{f' and {gpus:g} GPUs' if gpus else ''} do not fit this "
                          f"cluster ({total_cpu:g} CPUs, {total_gpu:g} GPUs on {len(nodes)} nodes; {fit} such actors fit): "
                          "ask for fewer actors or smaller shares")
    return actors, float(cpus), float(gpus), max(1, int(round(cpus)))


class BlockEncoder:
    """A Ray Data actor: loads the model once, then encodes one block (one row) per call."""

    def __init__(self, model: str, dtype: str | None, backend: str, fingerprint: str | None, batch_size: int,
                 threads: int, shards: str | None, return_vectors: bool, kill_at: str | None = None) -> None:
        import ray

        from lfm_colbert.encoder import ColBERT

        if threads:
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:  # an MLX-only node
                pass
        self.node = ray.get_runtime_context().get_node_id()
        self.model = ColBERT(model, backend=backend, dtype=dtype)
        have = self.model.checkpoint.fingerprint()
        if fingerprint and have != fingerprint:
            raise InputError(f"node {self.node[:8]}: {model} is another checkpoint (fingerprint {have}, the driver's is "
                             f"{fingerprint}); every node needs the same model files")
        self.batch_size, self.shards, self.return_vectors = batch_size, shards, return_vectors
        self.fingerprint = have
        self.kill_at = kill_at

    def _maybe_die(self, block: int) -> None:
        """The test hook: kill this worker process the first time it is given block BLOCK."""
        if not self.kill_at:
            return
        at, _, marker = self.kill_at.partition(":")
        if int(at) == block and marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        out: dict[str, list] = {"block": [], "ids": [], "doclens": [], "vectors": [], "node": [], "pid": []}
        for row in batch.to_pylist():
            self._maybe_die(row["block"])
            vectors = None
            key = None
            if self.shards:
                key = _shards.shard_key(row["ids"], row["texts"], row["parents"], row["metadata"], self.fingerprint)
            if key and not self.return_vectors and _shards.exists(self.shards, key):
                doclens = _shards.doclens_of(self.shards, key)  # written by an earlier run: nothing to encode
            else:
                vectors = self.model.encode(row["texts"], is_query=False, batch_size=self.batch_size, show_progress_bar=False)
                doclens = [len(v) for v in vectors]
                if key and not _shards.exists(self.shards, key):
                    _shards.write_shard(self.shards, key, row["ids"], row["parents"], row["texts"], row["metadata"], vectors)
            out["block"].append(row["block"])
            out["ids"].append(row["ids"])
            out["doclens"].append(doclens)
            flat = np.concatenate(vectors).astype(np.float32) if vectors is not None and self.return_vectors else None
            out["vectors"].append(flat.tobytes() if flat is not None else None)
            out["node"].append(self.node)
            out["pid"].append(os.getpid())
        return pa.table({"block": pa.array(out["block"], pa.int64()), "ids": pa.array(out["ids"], pa.list_(pa.string())),
                         "doclens": pa.array(out["doclens"], pa.list_(pa.int32())),
                         "vectors": pa.array(out["vectors"], pa.large_binary()), "node": pa.array(out["node"], pa.string()),
                         "pid": pa.array(out["pid"], pa.int64())})


class _Quiet(logging.Filter):
    """Ray Data's informational lines, which would interleave with the caller's progress bar."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not record.getMessage().startswith("Progress bars disabled")


def _watched(iterable: Iterable[Any], stall_timeout: float) -> Iterator[Any]:
    """Items of `iterable`, consumed in a thread; a RayJobError when none arrives for `stall_timeout` s."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in iterable:
                put(("item", item))
                if stop.is_set():
                    return
            put(("done", done))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    thread = threading.Thread(target=produce, name="ray-results", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, item = q.get(timeout=stall_timeout)
            except queue.Empty:
                raise RayJobError(f"no result from the Ray cluster for {stall_timeout:g} s: check `ray status` (are the "
                                  "actors' resources available?) and the actors' logs") from None
            if kind == "done":
                return
            if kind == "error":
                if isinstance(item, LfmColbertError):
                    raise item
                first = str(item).strip().splitlines()
                raise RayJobError(f"the Ray job failed: {type(item).__name__}: {first[-1] if first else ''}") from item
            yield item
    finally:
        stop.set()


def encode_blocks(
    blocks: Sequence[Sequence[Any]],
    model: Any,
    *,
    batch_size: int = 32,
    address: str | None = "auto",
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float | None = None,
    shards: str | os.PathLike | None = None,
    return_vectors: bool = True,
    stall_timeout: float | None = None,
    backend: str = "auto",
) -> Iterator[Encoded]:
    """Encode blocks of passages (objects with .id, .text, .parent, .metadata) on Ray; yields one
    `Encoded` per block, in block order, each exactly once. `model` is the driver's loaded `ColBERT`:
    actors load the same checkpoint (its path must exist on every node, or be a hub id) at the same
    dtype, and check its fingerprint."""
    import ray
    import ray.data

    desc = model.describe()
    if shards is not None:
        shards = str(_shards.prepare(shards, desc))
    if not blocks:
        return
    started = connect(address)
    quiet = _Quiet()
    consoles = [h for h in logging.getLogger("ray.data").handlers if getattr(h, "stream", None) is not None]
    for h in consoles:  # its log file keeps everything
        h.addFilter(quiet)
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start)
    try:
        n, cpus, gpus, threads = plan_actors(actors, cpus_per_actor, gpus_per_actor)
        n = min(n, len(blocks))  # an actor beyond the number of blocks would only load the model
        ctx.execution_options.preserve_order = True  # blocks come back in order: commits follow as they arrive
        ctx.enable_progress_bars = False  # the caller shows its own
        ctx.print_on_execution_start = False
        rows = []
        for b, block in enumerate(blocks):
            row = {"block": b, "ids": [p.id for p in block], "texts": [p.text for p in block]}
            if shards is not None:
                row["parents"] = [p.parent for p in block]
                row["metadata"] = [json.dumps(p.metadata, ensure_ascii=False, sort_keys=True) for p in block]
            rows.append(row)
        kwargs = dict(model=str(model.model_id), dtype=desc.get("dtype"), backend=backend, fingerprint=desc.get("fingerprint"),
                      batch_size=batch_size, threads=0 if gpus else threads, shards=shards,
                      return_vectors=return_vectors, kill_at=os.environ.get(KILL_ENV))
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            BlockEncoder, fn_constructor_kwargs=kwargs, batch_size=1, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=n), num_cpus=cpus, num_gpus=gpus or None,
        )  # Ray Data restarts a dead actor and retries its block without limit; a block that never
        # completes stops the job through the stall timeout
        dim = int(desc["dim"])
        pending: dict[int, Encoded] = {}
        seen: set[int] = set()
        nxt = 0
        for table in _watched(ds.iter_batches(batch_size=None, batch_format="pyarrow"), stall_timeout or STALL_TIMEOUT):
            for r in table.to_pylist():
                if r["block"] in seen:  # a retried block delivered twice: take it once
                    continue
                seen.add(r["block"])
                vectors = None
                if r["vectors"] is not None:
                    flat = np.frombuffer(r["vectors"], dtype=np.float32).reshape(-1, dim)
                    vectors = np.split(flat, np.cumsum(r["doclens"])[:-1])
                pending[r["block"]] = Encoded(r["block"], r["ids"], vectors, r["node"], r["pid"])
            while nxt in pending:
                yield pending.pop(nxt)
                nxt += 1
        if nxt != len(blocks):
            raise RayJobError(f"the Ray job returned {nxt} of {len(blocks)} blocks")
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        for h in consoles:
            h.removeFilter(quiet)
        if started:
            ray.shutdown()


class RayFeed:
    """An index (or Qdrant store) whose `add()` takes its vectors from a Ray job encoding `passages`.

    Every other attribute is the index's. `add(texts, ids=..., ...)` waits for the blocks holding
    those ids and stores them with `add_vectors`: the caller's commit loop stays as it is, and the
    job starts with the first add (no add, no cluster).
    """

    def __init__(self, index: Any, passages: Sequence[Any], *, commit_every: int = 512, batch_size: int = 32,
                 **ray_options: Any) -> None:
        self._index = index
        self._blocks = plan_blocks(passages, commit_every, batch_size)
        self._options = dict(batch_size=batch_size, **ray_options)
        self._stream: Iterator[Encoded] | None = None
        self._ready: dict[str, np.ndarray] = {}
        self.nodes: set[str] = set()  # the nodes whose actors encoded something (for reports and tests)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def take(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The vectors of passages `ids`, waiting for the blocks that hold them (the job starts here)."""
        ids = list(ids)
        if self._stream is None:
            self._stream = encode_blocks(self._blocks, self._index.model, **self._options)
        while any(i not in self._ready for i in ids):
            try:
                got = next(self._stream)
            except StopIteration:
                missing = [i for i in ids if i not in self._ready]
                raise InputError(f"{len(missing)} passage(s) are not part of this Ray job ({missing[0]!r}, ...)") from None
            self.nodes.add(got.node)
            self._ready.update(zip(got.ids, got.vectors))
        return [self._ready.pop(i) for i in ids]

    def add(self, documents: Sequence[str], ids: Sequence[str] | None = None, metadata: Any = None, *,
            parents: Sequence[str | None] | None = None, upsert: bool = False, progress_bar: Any = None, **_: Any) -> list[str]:
        if ids is None:
            raise InputError("a Ray-fed index needs the ids of the passages it encodes")
        ids = list(ids)
        vectors = self.take(ids)
        out = self._index.add_vectors(vectors, ids=ids, texts=list(documents), metadata=metadata, parents=parents, upsert=upsert)
        if progress_bar is not None:
            progress_bar.update(len(ids))
        return out

    def stop(self) -> None:
        """End the Ray job (disconnects from Ray); the index stays open."""
        if self._stream is not None:
            self._stream.close()  # disconnects from Ray (the generator's finally)
            self._stream = None

    def close(self) -> None:
        self.stop()
        self._index.close()


def feed_with_ray(index: Any, passages: Sequence[Any], args: Any) -> Any:
    """For `lfm-colbert index`: the index itself, or with --ray a `RayFeed` over the passages to encode."""
    if not getattr(args, "ray", None):
        if getattr(args, "shards", None):
            raise InputError("--shards needs --ray (the shards are written by the Ray actors)")
        return index
    import ray  # noqa: F401  (missing: a one-line error naming the extra, before any work)

    return RayFeed(index, passages, commit_every=args.commit_every, batch_size=args.batch_size, address=args.ray,
                   actors=args.ray_actors, cpus_per_actor=args.ray_cpus, gpus_per_actor=args.ray_gpus,
                   shards=args.shards, backend=args.backend)
