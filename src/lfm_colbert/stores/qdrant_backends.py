"""The few Qdrant operations `QdrantStore` needs, on two engines with different Python APIs.

    ClientBackend   qdrant-client: a Qdrant server (REST or gRPC), or its local mode (":memory:"
                    or a directory; a pure-Python engine meant for tests and small collections)
    EdgeBackend     qdrant-edge-py: Qdrant's own Rust engine in-process, one shard in a directory

Both store the same collection layout: a `colbert` multivector (float16, MaxSim, no HNSW graph:
m=0, so it is only ever scanned exactly, as a rerank stage must be) and, optionally, a `dense`
vector per document (HNSW) for a fast first stage. An HNSW graph on the multivector took 365 s
for 5k documents here and cut recall@10 to 0.26-0.71 (../shared/docs/scale-and-serve.md §2).

Records come back as (point id, payload, token vectors or None).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError

TOKENS = "colbert"  # the multivector
DENSE = "dense"  # the optional prefetch vector
MANIFEST_KEY = "lfm_colbert"  # collection metadata key (server / local mode)
EDGE_MANIFEST = "lfm-colbert.json"  # the manifest file of an edge store
EDGE_SHARD = "shard"

Record = tuple[str, dict[str, Any], "np.ndarray | None"]
Point = tuple[str, np.ndarray, "np.ndarray | None", dict[str, Any]]  # id, tokens (T, D), dense (D,), payload


class ClientConditions:
    """Filter objects for qdrant-client."""

    def __init__(self) -> None:
        from qdrant_client import models

        self.m = models

    def keyword_any(self, key: str, values: Sequence[str]) -> Any:
        m = self.m
        match = m.MatchValue(value=values[0]) if len(values) == 1 else m.MatchAny(any=list(values))
        return m.FieldCondition(key=key, match=match)

    def integer_any(self, key: str, values: Sequence[int]) -> Any:
        m = self.m
        return m.FieldCondition(key=key, match=m.MatchValue(value=values[0]) if len(values) == 1 else m.MatchAny(any=list(values)))

    def number_range(self, key: str, gt: float | None = None, gte: float | None = None,
                     lt: float | None = None, lte: float | None = None) -> Any:
        return self.m.FieldCondition(key=key, range=self.m.Range(gt=gt, gte=gte, lt=lt, lte=lte))

    def has_ids(self, point_ids: Sequence[str]) -> Any:
        return self.m.HasIdCondition(has_id=list(point_ids))

    def nothing(self) -> Any:
        return self.m.HasIdCondition(has_id=[])

    def all_of(self, conditions: Sequence[Any]) -> Any:
        return self.m.Filter(must=list(conditions))

    def any_of(self, conditions: Sequence[Any]) -> Any:
        return self.m.Filter(should=list(conditions))

    def none_of(self, conditions: Sequence[Any]) -> Any:
        return self.m.Filter(must_not=list(conditions))


class EdgeConditions:
    """Filter objects for qdrant-edge-py."""

    def __init__(self) -> None:
        import qdrant_edge

        self.q = qdrant_edge

    def keyword_any(self, key: str, values: Sequence[str]) -> Any:
        q = self.q
        return q.FieldCondition(key, match=q.MatchValue(values[0]) if len(values) == 1 else q.MatchAny(list(values)))

    def integer_any(self, key: str, values: Sequence[int]) -> Any:
        q = self.q
        return q.FieldCondition(key, match=q.MatchValue(int(values[0])) if len(values) == 1 else q.MatchAny([int(v) for v in values]))

    def number_range(self, key: str, gt: float | None = None, gte: float | None = None,
                     lt: float | None = None, lte: float | None = None) -> Any:
        return self.q.FieldCondition(key, range=self.q.RangeFloat(gt=gt, gte=gte, lt=lt, lte=lte))

    def has_ids(self, point_ids: Sequence[str]) -> Any:
        return self.q.HasIdCondition(set(point_ids))

    def nothing(self) -> Any:
        return self.q.HasIdCondition(set())

    def all_of(self, conditions: Sequence[Any]) -> Any:
        return self.q.Filter(must=list(conditions))

    def any_of(self, conditions: Sequence[Any]) -> Any:
        return self.q.Filter(should=list(conditions))

    def none_of(self, conditions: Sequence[Any]) -> Any:
        return self.q.Filter(must_not=list(conditions))


def _f32_lists(a: np.ndarray) -> list:
    return np.asarray(a, dtype=np.float32).tolist()


class ClientBackend:
    """A collection through qdrant-client (a server, or local mode)."""

    def __init__(self, client: Any, collection: str, remote: bool, owned: bool = False) -> None:
        self.client = client
        self.collection = collection
        self.remote = remote
        self.owned = owned  # a client the caller passed in stays open for the caller
        self.kind = "server" if remote else "local"
        self.conditions = ClientConditions()

    @classmethod
    def connect(cls, spec: Any, api_key: str | None = None, timeout: int | None = None) -> "ClientBackend":
        from qdrant_client import QdrantClient

        if spec.kind == "server":
            key = api_key or os.environ.get("QDRANT_API_KEY") or None
            # An unreachable server fails the first request with a clear error; the client's warning (from
            # a background thread) that it could not ask for the version would only repeat it, unclearly.
            # Its warning about an incompatible version stays.
            warnings.filterwarnings("ignore", message="Failed to obtain server version", category=UserWarning)
            client = QdrantClient(url=spec.url, prefix=spec.prefix, api_key=key, prefer_grpc=spec.grpc,
                                  timeout=timeout or 60)
            return cls(client, spec.collection, remote=True, owned=True)
        if spec.kind == "memory":
            return cls(QdrantClient(location=":memory:"), spec.collection, remote=False, owned=True)
        path = Path(spec.path)
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} exists and is not a directory")
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as exc:  # "already accessed by another instance of Qdrant client"
            raise InputError(f"{path} is open in another process (qdrant-client's local mode allows one): {exc}") from None
        return cls(client, spec.collection, remote=False, owned=True)

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def create(self, dim: int, dense: bool, manifest: dict[str, Any]) -> None:
        m = self.client_models()
        vectors = {TOKENS: m.VectorParams(
            size=dim, distance=m.Distance.DOT, datatype=m.Datatype.FLOAT16,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
            hnsw_config=m.HnswConfigDiff(m=0))}
        if dense:
            vectors[DENSE] = m.VectorParams(size=dim, distance=m.Distance.DOT)
        self.client.create_collection(self.collection, vectors_config=vectors, metadata={MANIFEST_KEY: manifest})

    def client_models(self) -> Any:
        from qdrant_client import models

        return models

    def manifest(self) -> dict[str, Any] | None:
        meta = self.client.get_collection(self.collection).config.metadata or {}
        return meta.get(MANIFEST_KEY)

    def layout(self) -> dict[str, Any]:
        """The collection's vectors as configured: {name: {size, multivector, hnsw_m}}."""
        info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        default_m = info.config.hnsw_config.m if info.config.hnsw_config else None
        out = {}
        for name, p in (vectors.items() if isinstance(vectors, dict) else []):
            out[name] = {"size": p.size,
                         "multivector": p.multivector_config.comparator.value if p.multivector_config else None,
                         "hnsw_m": p.hnsw_config.m if p.hnsw_config and p.hnsw_config.m is not None else default_m}
        return out

    def point_structs(self, points: Sequence[Point]) -> list[Any]:
        m = self.client_models()
        structs = []
        for pid, tokens, dense, payload in points:
            vector = {TOKENS: _f32_lists(tokens)}
            if dense is not None:
                vector[DENSE] = _f32_lists(dense)
            structs.append(m.PointStruct(id=pid, vector=vector, payload=payload))
        return structs

    def upsert(self, points: Sequence[Point]) -> None:
        self.client.upsert(self.collection, points=self.point_structs(points), wait=True)

    def delete(self, point_ids: Sequence[str]) -> None:
        m = self.client_models()
        self.client.delete(self.collection, points_selector=m.PointIdsList(points=list(point_ids)), wait=True)

    def _records(self, found: Sequence[Any]) -> list[Record]:
        out = []
        for r in found:
            tokens = None
            if isinstance(r.vector, dict) and TOKENS in r.vector:
                tokens = np.asarray(r.vector[TOKENS], dtype=np.float32)
            out.append((str(r.id), r.payload or {}, tokens))
        return out

    def retrieve(self, point_ids: Sequence[str], vectors: bool = False) -> list[Record]:
        found = self.client.retrieve(self.collection, list(point_ids), with_payload=True,
                                     with_vectors=[TOKENS] if vectors else False)
        return self._records(found)

    def scroll(self, flt: Any, offset: str | None, limit: int, vectors: bool = False, fields: Sequence[str] | None = None
               ) -> tuple[list[Record], str | None]:
        found, nxt = self.client.scroll(self.collection, scroll_filter=flt, limit=limit, offset=offset,
                                        with_payload=list(fields) if fields is not None else True,
                                        with_vectors=[TOKENS] if vectors else False)
        return self._records(found), None if nxt is None else str(nxt)

    def count(self, flt: Any = None) -> int:
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def query(self, tokens: np.ndarray, k: int, flt: Any, prefetch: tuple[np.ndarray, int] | None) -> list[tuple[str, float, dict]]:
        m = self.client_models()
        pre = None
        if prefetch is not None:
            pre = m.Prefetch(query=_f32_lists(prefetch[0]), using=DENSE, limit=prefetch[1], filter=flt)
        # The multivector has no graph (m=0), so a server scans it exactly anyway; exact=True keeps a
        # collection someone reconfigured from silently turning approximate. Local mode is always exact
        # and warns that it ignores search_params, so it gets none.
        params = m.SearchParams(exact=True) if self.remote else None
        res = self.client.query_points(self.collection, query=_f32_lists(tokens), using=TOKENS, prefetch=pre,
                                       query_filter=flt, limit=k, with_payload=True, search_params=params)
        return [(str(p.id), float(p.score), p.payload or {}) for p in res.points]

    def segments(self) -> int | None:
        return getattr(self.client.get_collection(self.collection), "segments_count", None) if self.remote else None

    def optimize(self) -> None:
        """A server optimizes in the background; local mode has nothing to optimize."""

    def flush(self) -> None:
        """Writes are acknowledged with wait=True: nothing to flush."""

    def close(self) -> None:
        if self.owned:
            self.client.close()

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """Errors worth retrying: the connection, timeouts, overload, a server restarting."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, UnexpectedResponse):
            return exc.status_code in (408, 429, 500, 502, 503, 504)
        try:
            import grpc
        except ImportError:  # pragma: no cover - grpc comes with qdrant-client
            return False
        if isinstance(exc, grpc.RpcError):
            codes = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                     grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED)
            return exc.code() in codes
        return False


class EdgeBackend:
    """One Qdrant Edge shard in DIR/shard, with the lfm-colbert manifest beside it in DIR.

    One process at a time: Edge locks the shard's write-ahead log.
    """

    kind = "edge"
    remote = False

    def __init__(self, path: str | os.PathLike) -> None:
        import qdrant_edge

        self.q = qdrant_edge
        self.path = Path(path)
        self.collection = str(self.path)
        self.conditions = EdgeConditions()
        self.shard: Any = None
        self._manifest: dict[str, Any] | None = None
        if (self.path / EDGE_MANIFEST).is_file():
            try:
                self._manifest = json.loads((self.path / EDGE_MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise IndexFormatError(f"unreadable {self.path / EDGE_MANIFEST}: {exc}") from None
            if (self.path / EDGE_SHARD).is_dir():
                self.shard = self._open(lambda p: qdrant_edge.EdgeShard.load(p))

    def _open(self, how: Any) -> Any:
        try:
            return how(str(self.path / EDGE_SHARD))
        except Exception as exc:  # the binding raises plain Exceptions (a locked WAL, damaged files)
            raise IndexFormatError(f"cannot open the Qdrant Edge shard in {self.path}: {exc} "
                                   "(is it open in another process?)") from None

    def exists(self) -> bool:
        return self._manifest is not None

    def _config(self, dim: int, dense: bool) -> Any:
        q = self.q
        vectors = {TOKENS: q.EdgeVectorParams(
            size=dim, distance=q.Distance.Dot, datatype=q.VectorStorageDatatype.Float16,
            multivector_config=q.MultiVectorConfig(q.MultiVectorComparator.MaxSim),
            hnsw_config=q.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000))}
        if dense:
            vectors[DENSE] = q.EdgeVectorParams(size=dim, distance=q.Distance.Dot)
        return q.EdgeConfig(vectors=vectors)

    def create(self, dim: int, dense: bool, manifest: dict[str, Any]) -> None:
        if self.path.exists():
            if not self.path.is_dir():
                raise InputError(f"{self.path} exists and is not a directory")
            if any(not p.name.startswith(".") for p in self.path.iterdir()):
                raise InputError(f"{self.path} exists and is not an lfm-colbert Qdrant Edge store "
                                 f"(no {EDGE_MANIFEST}); give a new or empty directory")
        self.path.mkdir(parents=True, exist_ok=True)
        # The manifest first: a directory holding it is ours, so a creation interrupted before the
        # shard exists is finished by the next open instead of refused as foreign data.
        tmp = self.path / f".{EDGE_MANIFEST}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path / EDGE_MANIFEST)
        self._manifest = manifest
        self.ensure_shard()

    def ensure_shard(self) -> None:
        if self.shard is None and self._manifest is not None:
            config = self._config(int(self._manifest["dim"]), bool(self._manifest.get("dense")))
            self.shard = self._open(lambda p: self.q.EdgeShard.create(p, config))

    def manifest(self) -> dict[str, Any] | None:
        return self._manifest

    def layout(self) -> dict[str, Any]:
        m = self._manifest or {}
        out = {TOKENS: {"size": m.get("dim"), "multivector": "max_sim", "hnsw_m": 0}}
        if m.get("dense"):
            out[DENSE] = {"size": m.get("dim"), "multivector": None, "hnsw_m": 16}
        return out

    def upsert(self, points: Sequence[Point]) -> None:
        q = self.q
        batch = []
        for pid, tokens, dense, payload in points:
            vector = {TOKENS: _f32_lists(tokens)}
            if dense is not None:
                vector[DENSE] = _f32_lists(dense)
            batch.append(q.Point(pid, vector, payload))
        self.shard.update(q.UpdateOperation.upsert_points(batch))

    def delete(self, point_ids: Sequence[str]) -> None:
        self.shard.update(self.q.UpdateOperation.delete_points(list(point_ids)))

    def _records(self, found: Sequence[Any]) -> list[Record]:
        out = []
        for r in found:
            vec = r.vector
            tokens = np.asarray(vec[TOKENS], dtype=np.float32) if isinstance(vec, dict) and TOKENS in vec else None
            out.append((str(r.id), r.payload or {}, tokens))
        return out

    def retrieve(self, point_ids: Sequence[str], vectors: bool = False) -> list[Record]:
        return self._records(self.shard.retrieve(list(point_ids), True, [TOKENS] if vectors else False))

    def scroll(self, flt: Any, offset: str | None, limit: int, vectors: bool = False, fields: Sequence[str] | None = None
               ) -> tuple[list[Record], str | None]:
        q = self.q
        payload = q.PayloadSelector.Include(list(fields)) if fields is not None else True
        found, nxt = self.shard.scroll(q.ScrollRequest(offset=offset, limit=limit, filter=flt, with_payload=payload,
                                                       with_vector=[TOKENS] if vectors else False))
        return self._records(found), None if nxt is None else str(nxt)

    def count(self, flt: Any = None) -> int:
        return int(self.shard.count(self.q.CountRequest(filter=flt, exact=True)))

    def query(self, tokens: np.ndarray, k: int, flt: Any, prefetch: tuple[np.ndarray, int] | None) -> list[tuple[str, float, dict]]:
        q = self.q
        pre = []
        if prefetch is not None:
            pre = [q.Prefetch(query=q.Query.Nearest(_f32_lists(prefetch[0]), using=DENSE), limit=prefetch[1], filter=flt)]
        req = q.QueryRequest(prefetches=pre, query=q.Query.Nearest(_f32_lists(tokens), using=TOKENS), filter=flt,
                             limit=k, with_payload=True, with_vector=False, params=q.SearchParams(exact=True))
        return [(str(p.id), float(p.score), p.payload or {}) for p in self.shard.query(req)]

    def segments(self) -> int | None:
        return int(self.shard.info().segments_count)

    def optimize(self) -> None:
        """Edge runs its optimizers only when asked: merge segments and build the dense graph."""
        self.shard.optimize()

    def flush(self) -> None:
        self.shard.flush()

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        return False  # in-process: retrying an error gives the same error
