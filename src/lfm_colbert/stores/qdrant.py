"""`QdrantStore`: the embedded `Index` API on a Qdrant collection (a server, local mode, or Qdrant Edge).

    >>> store = QdrantStore("qdrant+http://localhost:6333/docs", model)     # creates it, or opens it
    >>> store.add(["Penguins live in the south."], ids=["p1"], metadata=[{"lang": "en"}])
    >>> store.search("¿Dónde viven los pingüinos?", k=5, filter={"lang": "en"})
    [Hit(id='p1', score=27.4, text='Penguins live in the south.', metadata={'lang': 'en'})]

One point per document: its token vectors as a MaxSim multivector (float16, scanned exactly: no
HNSW graph), optionally a dense vector (the normalised mean of its tokens) for a fast first stage,
and a payload {"id", "text", "parent", "metadata", "n_tokens", "_filter"}. Point ids are UUIDv5 of
the user's ids, so adding an id again overwrites the same point and nothing is ever renumbered.
The model's description (as `ColBERT.describe()` gives it) is recorded with the collection and
checked when it is opened, as the embedded index's manifest is.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from lfm_colbert.errors import IndexFormatError, InputError, LfmColbertError
from lfm_colbert.index import Document, Hit
from lfm_colbert.stores import filters
from lfm_colbert.stores.qdrant_backends import TOKENS, ClientBackend, EdgeBackend
from lfm_colbert.stores.spec import StoreSpec, parse_spec
from lfm_colbert.tokenization import check_texts

FORMAT = "lfm-colbert-qdrant"
VERSION = 1
NAMESPACE = uuid.UUID("fb5c805a-e35c-5084-abbe-f5c2355da5fb")  # uuid5(NAMESPACE_URL, "lfm-colbert:qdrant-point-id")
UPLOAD_POINTS = 64  # points per upload request
# Request size: a 100-token document is ~268 kB as REST JSON (52 kB over gRPC), and a server refuses
# requests over 32 MB by default, so batches are also cut at this many estimated bytes.
UPLOAD_BYTES = 8 << 20
RETRIES = 3  # tries per request when the error is transient (connection, timeout, 429, 5xx)
PAGE = 256  # ids per retrieve / scroll request
COUNT_TOKENS_UP_TO = 100_000  # info() sums token counts point by point only up to this many documents
# Settings a query must share with the documents it is compared to (a different prefix or length
# encodes queries that were never trained against these documents).
_CHECKED = ("dim", "variant", "fingerprint")
_CHECKED_SETTINGS = ("query_prefix", "document_prefix")


class StoreError(LfmColbertError):
    """A Qdrant request failed (after retries, where retrying could help)."""


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document id: stable across runs, machines and stores."""
    return str(uuid.uuid5(NAMESPACE, doc_id))


def dense_vector(tokens: np.ndarray) -> np.ndarray:
    """A document's (or query's) dense prefetch vector: the L2-normalised mean of its token vectors."""
    v = np.asarray(tokens, dtype=np.float32).mean(axis=0)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def clean_metadata(meta: Mapping[str, Any] | None, doc_id: str) -> dict[str, Any]:
    """Metadata as stored: plain JSON (numpy scalars become numbers), finite numbers only."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputError(f"metadata of {doc_id!r} must be a dict, not {type(meta).__name__}")

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    try:
        return json.loads(json.dumps(dict(meta), allow_nan=False, default=plain))
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata of {doc_id!r}: {exc} (use strings, finite numbers, booleans, lists and dicts)") from None


def _describe(model: Any) -> dict[str, Any]:
    desc = dict(model) if isinstance(model, Mapping) else dict(model.describe())
    if not isinstance(desc.get("dim"), int) or desc["dim"] <= 0:
        raise InputError("the model description needs a positive integer 'dim'")
    return desc


class QdrantStore:
    """A Qdrant collection of ColBERT documents, with the embedded `Index`'s methods.

    spec:     "qdrant+http://host:6333/COLLECTION", "qdrant+path:DIR", "qdrant+memory:",
              "qdrant+edge:DIR" (see lfm_colbert.stores.spec), or a parsed StoreSpec.
    model:    a loaded `ColBERT`, a hub id or path (loaded when first needed), None (the model the
              collection was built with; for a new one, the default model), or a dict like
              `ColBERT.describe()` for a collection fed with precomputed vectors only.
    dense:    a new collection also stores a dense prefetch vector per document (default: the
              spec's ?dense=, else no). Fixed at creation.
    prefetch: default number of dense candidates a search ranks by MaxSim (None: every document
              is scored; exact). Needs a collection created with dense vectors.
    client:   an existing `QdrantClient` to use (its TLS, timeouts, ...) instead of the spec's.
    upload_points, upload_bytes, retries: upload batches and tries per batch.
    """

    def __init__(
        self,
        spec: str | StoreSpec,
        model: Any = None,
        *,
        create: bool = True,
        dense: bool | None = None,
        prefetch: int | None = None,
        client: Any = None,
        api_key: str | None = None,
        upload_points: int = UPLOAD_POINTS,
        upload_bytes: int = UPLOAD_BYTES,
        retries: int = RETRIES,
        backend: str = "auto",
        device: str | None = None,
    ) -> None:
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        self.upload_points, self.upload_bytes, self.retries = upload_points, upload_bytes, max(1, retries)
        self._placement = {"backend": backend, "device": device}
        self._model_obj: Any = None
        self._model_spec: str | None = None
        self._bulk = False
        self._dirty = False
        with self._guard("opening"):
            if self.spec.kind == "edge":
                self._b: Any = EdgeBackend(self.spec.path)
            elif client is not None:
                self._b = ClientBackend(client, self.spec.collection, remote=self.spec.kind == "server")
            else:
                self._b = ClientBackend.connect(self.spec, api_key)
            exists = self._b.exists()
        dense = self.spec.dense if dense is None else dense
        if exists:
            self._open(dense)
        elif not create:
            self._b.close()
            raise IndexFormatError(f"no lfm-colbert collection at {self.spec}")
        else:
            self._create(model, bool(dense))
        self._attach(model)
        self.prefetch = self.spec.prefetch if prefetch is None else prefetch
        if self.prefetch is not None:
            self._check_prefetch(self.prefetch)

    # -- opening and the model -------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Errors of the Qdrant libraries (connection refused, a bad request) as one clear StoreError."""
        try:
            yield
        except LfmColbertError:
            raise
        except Exception as exc:
            raise StoreError(f"{what} {self.spec} failed: {_one_line(exc)}") from exc

    def _open(self, dense: bool | None) -> None:
        with self._guard("reading"):
            manifest = self._b.manifest()
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            self._b.close()
            raise IndexFormatError(f"{self.spec} exists but was not created by lfm-colbert (it records no "
                                   "lfm_colbert description); give a new collection name")
        if manifest.get("version", 0) > VERSION:
            self._b.close()
            raise IndexFormatError(f"{self.spec} was written by a newer lfm-colbert (format {manifest['version']}); upgrade")
        if dense is not None and bool(dense) != bool(manifest.get("dense")):
            self._b.close()
            have = "stores" if manifest.get("dense") else "does not store"
            raise InputError(f"{self.spec} {have} dense prefetch vectors; dense is chosen at creation")
        self.manifest = manifest
        with self._guard("opening"):
            if isinstance(self._b, EdgeBackend):
                self._b.ensure_shard()
            layout = self._b.layout()
        tok = layout.get(TOKENS) or {}
        if tok.get("size") != manifest["dim"] or tok.get("multivector") != "max_sim":
            raise IndexFormatError(f"{self.spec}: its '{TOKENS}' vector is not a {manifest['dim']}-d MaxSim multivector ({tok})")
        if tok.get("hnsw_m") not in (0, None):
            warnings.warn(f"{self.spec}: the '{TOKENS}' multivector has an HNSW graph (m={tok['hnsw_m']}): building it is "
                          "slow and makes MaxSim approximate; lfm-colbert creates it with m=0", stacklevel=3)

    def _create(self, model: Any, dense: bool) -> None:
        if model is None or isinstance(model, (str, Path)):
            from lfm_colbert.encoder import ColBERT

            model = ColBERT(None if model is None else str(model), **self._placement)
        if not isinstance(model, Mapping):
            self._model_obj = model
        desc = _describe(model)
        self.manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": desc,
            "dim": desc["dim"],
            "dense": dense,
        }
        with self._guard("creating"):
            self._b.create(desc["dim"], dense, self.manifest)

    def _attach(self, model: Any) -> None:
        if model is None:
            return
        if isinstance(model, (str, Path)):
            self._model_spec = str(model)
            return
        self._check_model(_describe(model))
        if not isinstance(model, Mapping):
            self._model_obj = model

    def _check_model(self, desc: Mapping[str, Any]) -> None:
        have = self.manifest["model"]
        pairs = [(k, have.get(k), desc.get(k)) for k in _CHECKED]
        pairs += [(k, (have.get("settings") or {}).get(k), (desc.get("settings") or {}).get(k)) for k in _CHECKED_SETTINGS]
        for key, a, b in pairs:
            if a is not None and b is not None and a != b:
                raise IndexFormatError(
                    f"{self.spec} was built with model {have.get('model_id')!r} ({key} {a!r}); the model given is "
                    f"{desc.get('model_id')!r} ({key} {b!r}). Search a collection with the model that built it."
                )

    @property
    def model(self) -> Any:
        """The encoder, loaded on first use (the one given, else the one recorded with the collection)."""
        if self._model_obj is None:
            spec = self._model_spec or self.manifest["model"].get("model_id")
            if not spec:
                raise InputError(f"{self.spec} holds precomputed vectors only; pass model= to encode text")
            from lfm_colbert.encoder import ColBERT

            model = ColBERT(spec, dtype=self.manifest["model"].get("dtype"), **self._placement)
            self._check_model(_describe(model))
            self._model_obj = model
        return self._model_obj

    @property
    def dense(self) -> bool:
        return bool(self.manifest.get("dense"))

    def _check_prefetch(self, n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"prefetch must be a positive number of candidates, not {n!r}")
        if not self.dense:
            raise InputError(f"{self.spec} stores no dense vectors to prefetch with; create it with dense=True (?dense=1)")
        return int(n)

    # -- writing ---------------------------------------------------------------------------------
    def add(
        self,
        documents: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        parents: Sequence[str | None] | None = None,
        upsert: bool = False,
        batch_size: int = 32,
        show_progress: bool | None = None,
        progress_bar: Any = None,
    ) -> list[str]:
        """Encode and add documents; returns their ids. Same rules as `Index.add`: an existing id is an
        error unless `upsert`, which replaces it (and every passage of a `parents` id). Uploaded in
        bounded batches as they are encoded; see `_write` for what a failure leaves."""
        if isinstance(documents, str):
            raise InputError("add() takes a list of documents, not one string")
        docs = check_texts(list(documents)) if documents else []
        model = self.model

        def vectors() -> Iterator[np.ndarray]:
            from tqdm.auto import tqdm

            bar = progress_bar or tqdm(total=len(docs), desc="encoding", unit="doc",
                                       disable=None if show_progress is None else not show_progress)
            step = max(batch_size, 256)
            for s in range(0, len(docs), step):
                yield from model.encode(docs[s : s + step], is_query=False, batch_size=batch_size, show_progress_bar=False)
                bar.update(min(step, len(docs) - s))
            if progress_bar is None:
                bar.close()

        return self._write(vectors(), len(docs), ids, docs, metadata, parents, upsert)

    def add_vectors(
        self,
        vectors: Sequence[np.ndarray],
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        parents: Sequence[str | None] | None = None,
        upsert: bool = False,
    ) -> list[str]:
        """Add precomputed document vectors, each (T_i, dim); same rules as `add`."""
        vectors = list(vectors)
        return self._write(iter(vectors), len(vectors), ids, texts, metadata, parents, upsert)

    def upsert(self, documents: Sequence[str], ids: Sequence[str], metadata: Any = None, **kw: Any) -> list[str]:
        """Add documents, replacing any with the same ids."""
        return self.add(documents, ids, metadata, upsert=True, **kw)

    def _write(self, vectors: Iterator[np.ndarray], n: int, ids: Any, texts: Any, metadata: Any, parents: Any,
               upsert: bool) -> list[str]:
        """Upload documents in batches of at most `upload_points` points and `upload_bytes` bytes.

        Each batch is retried on transient errors. A batch that still fails raises a StoreError that
        names it; the batches before it stay stored (Qdrant has no multi-request transaction), so
        adding the same documents again with upsert completes the write.
        """
        ids = [uuid.uuid4().hex for _ in range(n)] if ids is None else list(ids)
        texts = [None] * n if texts is None else list(texts)
        metadata = [None] * n if metadata is None else list(metadata)
        parents = [None] * n if parents is None else list(parents)
        for name, seq in (("ids", ids), ("texts", texts), ("metadata", metadata), ("parents", parents)):
            if len(seq) != n:
                raise InputError(f"got {n} documents but {len(seq)} {name}")
        for i in ids:
            if not isinstance(i, str) or not i:
                raise InputError(f"document ids must be non-empty strings, not {i!r}")
        if len(set(ids)) != n:
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError(f"id {dup!r} appears more than once in this call")
        metadata = [clean_metadata(m, i) for m, i in zip(metadata, ids)]
        if n == 0:
            return []
        pids = [point_id(i) for i in ids]
        if not upsert:
            have = self._present(pids)
            if have:
                shown = ", ".join(sorted(ids[j] for j, p in enumerate(pids) if p in have)[:5])
                raise InputError(f"{len(have)} id(s) already in the store ({shown}); use upsert to replace them")
        new = set(pids)
        stale = [p for p in self._passages_of(sorted({p for p in parents if p})) if p not in new] if upsert else []
        dim = self.manifest["dim"]
        per_value = 4 if (self.spec.grpc or not self._b.remote) else 16  # bytes per number sent
        batch: list[Any] = []
        size = 0
        done = [0, 0]  # batches, documents stored
        count = 0
        for j, vec in enumerate(vectors):
            vec = np.asarray(vec)
            if vec.ndim != 2 or vec.shape[1] != dim or len(vec) == 0:
                raise InputError(f"vectors of {ids[j]!r} must be a non-empty (tokens, {dim}) array, not {vec.shape}")
            tokens = vec.astype(np.float16)  # what the embedded index stores, and the collection's datatype
            payload = {"id": ids[j], "text": texts[j], "parent": parents[j], "metadata": metadata[j],
                       "n_tokens": int(len(vec)), filters.FILTER_FIELD: filters.filter_payload(metadata[j])}
            batch.append((pids[j], tokens, dense_vector(tokens) if self.dense else None, payload))
            size += tokens.size * per_value + len(texts[j] or "") * 2 + 256
            count += 1
            if len(batch) >= self.upload_points or size >= self.upload_bytes:
                self._upload(batch, done)
                batch, size = [], 0
        if count != n:
            raise InputError(f"got {n} ids but {count} vector arrays")
        if batch:
            self._upload(batch, done)
        for s in range(0, len(stale), 1000):  # passages the new version of a document no longer has
            self._retrying(lambda part=stale[s : s + 1000]: self._b.delete(part), f"deleting {len(stale)} replaced passages")
        self._after_write()
        return ids

    def _retrying(self, call: Any, what: str) -> None:
        for attempt in range(1, self.retries + 1):
            try:
                call()
                return
            except LfmColbertError:
                raise
            except Exception as exc:
                if attempt < self.retries and self._b.is_transient(exc):
                    time.sleep(0.5 * 2 ** (attempt - 1))
                    continue
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise StoreError(f"{what} in {self.spec} failed{tries}: {_one_line(exc)}") from exc

    def _upload(self, batch: list[Any], done: list[int]) -> None:
        first, last = batch[0][3]["id"], batch[-1][3]["id"]
        what = (f"upload batch {done[0] + 1} (documents {done[1] + 1}-{done[1] + len(batch)} of this call, "
                f"{first!r} to {last!r})")
        try:
            self._retrying(lambda: self._b.upsert(batch), what)
        except StoreError as exc:
            kept = (f"the {done[1]} documents of batches 1-{done[0]} are stored and stay" if done[0]
                    else "nothing of this call was stored")
            raise StoreError(f"{exc}; {kept}; add the same documents again with upsert to complete it") from exc.__cause__
        done[0] += 1
        done[1] += len(batch)
        self._dirty = True

    def _after_write(self) -> None:
        with self._guard("flushing"):
            self._b.flush()
            if not self._bulk:
                self._optimize()

    def _optimize(self) -> None:
        if self._dirty:
            self._b.optimize()
            self._dirty = False

    @contextlib.contextmanager
    def bulk(self) -> Iterator["QdrantStore"]:
        """Several adds as one load: Qdrant Edge optimizes its segments once, at the end."""
        self._bulk = True
        try:
            yield self
        finally:
            self._bulk = False
        with self._guard("optimizing"):
            self._optimize()

    def delete(self, ids: Sequence[str] | str, missing_ok: bool = False) -> int:
        """Delete documents by id (a parent id deletes all its passages); returns how many were removed.
        Unknown ids are an error (and nothing is deleted) unless `missing_ok`."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not ids:
            raise InputError("no ids to delete")
        present = self._present([point_id(i) for i in ids])
        targets = set(present)
        found_parents = set()
        for s in range(0, len(ids), PAGE):
            part = ids[s : s + PAGE]
            for pid, payload, _ in self._scan(self._b.conditions.all_of([self._b.conditions.keyword_any("parent", part)]),
                                              fields=["parent"]):
                targets.add(pid)
                found_parents.add(payload.get("parent"))
        unknown = [i for i in ids if point_id(i) not in present and i not in found_parents]
        if unknown and not missing_ok:
            shown = ", ".join(repr(u) for u in unknown[:5])
            raise InputError(f"{len(unknown)} id(s) not in the store: {shown}; nothing was deleted")
        targets_list = sorted(targets)
        for s in range(0, len(targets_list), 1000):
            self._retrying(lambda part=targets_list[s : s + 1000]: self._b.delete(part), f"deleting {len(targets_list)} documents")
        self._dirty = bool(targets_list) or self._dirty
        self._after_write()
        return len(targets_list)

    # -- reading ---------------------------------------------------------------------------------
    def _present(self, pids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        with self._guard("reading"):
            for s in range(0, len(pids), PAGE):
                out.update(r[0] for r in self._b.retrieve(pids[s : s + PAGE]))
        return out

    def _scan(self, flt: Any = None, fields: Sequence[str] | None = None, vectors: bool = False) -> Iterator[Any]:
        offset = None
        while True:
            with self._guard("reading"):
                records, offset = self._b.scroll(flt, offset, PAGE, vectors=vectors, fields=fields)
            yield from records
            if offset is None:
                return

    def _passages_of(self, parents: Sequence[str]) -> list[str]:
        out: list[str] = []
        c = self._b.conditions
        for s in range(0, len(parents), PAGE):
            out += [r[0] for r in self._scan(c.all_of([c.keyword_any("parent", parents[s : s + PAGE])]), fields=["parent"])]
        return out

    def _documents(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{id: payload} of those of `ids` that exist."""
        out = {}
        with self._guard("reading"):
            for s in range(0, len(ids), PAGE):
                for _, payload, _ in self._b.retrieve([point_id(i) for i in ids[s : s + PAGE]]):
                    out[payload["id"]] = payload
        return out

    def get(self, ids: str | Sequence[str]) -> Document | None | list[Document | None]:
        """The stored document with this id (None if there is none), or a list for a list of ids."""
        single = isinstance(ids, str)
        wanted = [ids] if single else list(ids)
        for i in wanted:
            if not isinstance(i, str):
                raise InputError(f"document ids are strings, not {type(i).__name__}")
        found = self._documents(wanted)
        docs = [_document(found[i]) if i in found else None for i in wanted]
        return docs[0] if single else docs

    def list(self, filter: Mapping[str, Any] | None = None, limit: int | None = None, after: str | None = None) -> list[Document]:
        """Documents matching `filter`, at most `limit`, in point-id order (stable, not alphabetical),
        starting after id `after` (pass the last id of one page to get the next)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError(f"limit must be a positive integer, not {limit!r}")
        flt = filters.translate(filter, self._b.conditions)
        offset = point_id(after) if after is not None else None
        out: list[Document] = []
        while limit is None or len(out) < limit:
            with self._guard("reading"):
                records, nxt = self._b.scroll(flt, offset, PAGE + 1)
            for pid, payload, _ in records:
                if after is not None and pid == offset:
                    continue  # a scroll offset is inclusive
                out.append(_document(payload))
            if nxt is None:
                break
            offset, after = nxt, None
        return out if limit is None else out[:limit]

    def __iter__(self) -> Iterator[Document]:
        for _, payload, _ in self._scan():
            yield _document(payload)

    def __len__(self) -> int:
        with self._guard("counting"):
            return self._b.count()

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(self._present([point_id(doc_id)]))

    def vectors(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The stored token vectors of documents `ids`, each (T_i, dim) float32 (float16 precision)."""
        wanted = [ids] if isinstance(ids, str) else list(ids)
        got: dict[str, np.ndarray] = {}
        with self._guard("reading"):
            for s in range(0, len(wanted), PAGE):
                for _, payload, tokens in self._b.retrieve([point_id(i) for i in wanted[s : s + PAGE]], vectors=True):
                    got[payload["id"]] = tokens
        missing = [i for i in wanted if i not in got]
        if missing:
            raise InputError(f"{len(missing)} id(s) not in the store: {', '.join(map(repr, missing[:5]))}")
        return [got[i] for i in wanted]

    def unchanged(self, ids: Sequence[str], texts: Sequence[str | None], metadata: Sequence[Any] | None = None,
                  parents: Sequence[str | None] | None = None) -> set[str]:
        """The ids already stored with this very text, metadata and parent (as `Index.unchanged`)."""
        n = len(ids)
        metadata = [None] * n if metadata is None else list(metadata)
        parents = [None] * n if parents is None else list(parents)
        stored = {i: (p.get("parent"), p.get("text"), p.get("metadata") or {}) for i, p in self._documents(list(ids)).items()}
        c = self._b.conditions
        wanted_parents = sorted({p for p in parents if p})
        for s in range(0, len(wanted_parents), PAGE):
            for _, p, _ in self._scan(c.all_of([c.keyword_any("parent", wanted_parents[s : s + PAGE])])):
                stored[p["id"]] = (p.get("parent"), p.get("text"), p.get("metadata") or {})
        same = {i for i, t, m, p in zip(ids, texts, metadata, parents) if stored.get(i) == (p, t, clean_metadata(m, i))}
        given: dict[str, set[str]] = {}
        for i, p in zip(ids, parents):
            if p:
                given.setdefault(p, set()).add(i)
        held: dict[str, set[str]] = {}
        for i, (p, _, _) in stored.items():
            if p:
                held.setdefault(p, set()).add(i)
        for p, passages in given.items():
            if passages != held.get(p) or not passages <= same:
                same -= passages
        return same

    # -- searching -------------------------------------------------------------------------------
    def search(self, query: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None, *,
               prefetch: int | None = None) -> list[Hit] | list[list[Hit]]:
        """Top-k documents by MaxSim for a query (a list of Hit), or for each of several (a list of lists).
        `prefetch`: rank only the N documents nearest by dense vector (default: the store's)."""
        single = isinstance(query, str)
        queries = [query] if single else list(query) if isinstance(query, (list, tuple)) else None
        if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise InputError("a query must be a non-empty string (or a non-empty list of them)")
        vecs = self.model.encode(queries, is_query=True, show_progress_bar=False)
        results = self._search(vecs, k, filter, prefetch)
        return results[0] if single else results

    def search_vectors(self, queries: np.ndarray | Sequence[np.ndarray], k: int = 10, filter: Mapping[str, Any] | None = None,
                       *, prefetch: int | None = None) -> list[Hit] | list[list[Hit]]:
        """Like `search`, for query vectors: one (Q, dim) array gives a list, several give a list of lists."""
        single = isinstance(queries, np.ndarray) and queries.ndim == 2
        qs = [np.asarray(q, dtype=np.float32) for q in ([queries] if single else list(queries))]
        if not qs or any(q.ndim != 2 or q.shape[0] == 0 or q.shape[1] != self.manifest["dim"] for q in qs):
            raise InputError(f"query vectors must be non-empty (tokens, {self.manifest['dim']}) arrays")
        results = self._search(qs, k, filter, prefetch)
        return results[0] if single else results

    def _search(self, queries: Sequence[np.ndarray], k: int, filter: Any, prefetch: int | None) -> list[list[Hit]]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, not {k!r}")
        n = self.prefetch if prefetch is None else self._check_prefetch(prefetch)
        flt = filters.translate(filter, self._b.conditions)
        out = []
        with self._guard("searching"):
            for q in queries:
                pre = (dense_vector(q), max(int(n), int(k))) if n else None
                out.append([Hit(p["id"], s, p.get("text"), p.get("metadata") or {}) for _, s, p in self._b.query(q, int(k), flt, pre)])
        return out

    def rerank(self, query: str | np.ndarray, ids: Sequence[str], k: int | None = None) -> list[Hit]:
        """Score stored documents `ids` (candidates from another retriever) for `query` by MaxSim; best first."""
        ids = list(ids)
        if not ids:
            raise InputError("no ids to rerank")
        present = self._present([point_id(i) for i in ids])
        missing = [i for i in ids if point_id(i) not in present]
        if missing:
            raise InputError(f"{len(missing)} id(s) not in the store: {', '.join(map(repr, missing[:5]))}")
        q = query if isinstance(query, np.ndarray) else self.model.encode([query], is_query=True, show_progress_bar=False)[0]
        c = self._b.conditions
        flt = c.all_of([c.has_ids([point_id(i) for i in ids])])
        with self._guard("reranking"):
            found = self._b.query(np.asarray(q, dtype=np.float32), len(ids), flt, None)
        hits = [Hit(p["id"], s, p.get("text"), p.get("metadata") or {}) for _, s, p in found]
        return hits if k is None else hits[:k]

    # -- description and lifecycle ---------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts and settings, JSON-able; the keys `Index.info()` has, where they apply."""
        n = len(self)
        tokens = sum(int(p.get("n_tokens", 0)) for _, p, _ in self._scan(fields=["n_tokens"])) if n <= COUNT_TOKENS_UP_TO else None
        size = None
        if self.spec.path and Path(self.spec.path).is_dir():
            size = sum(_disk_bytes(p) for p in Path(self.spec.path).rglob("*") if p.is_file())
        with self._guard("describing"):
            layout, segments = self._b.layout(), self._b.segments()
        return {
            "path": str(self.spec), "store": "qdrant", "engine": self._b.kind, "collection": self.spec.collection,
            "format_version": self.manifest.get("version"), "created": self.manifest.get("created"),
            "model": self.manifest["model"],
            "storage": {"kind": "qdrant", "nbits": None, "vectors": layout, "dense": self.dense, "prefetch": self.prefetch},
            "n_centroids": None, "train_tokens": None, "codec_trained_on_tokens": None, "codec_growth": None,
            "float16_segments": None, "documents": n, "tokens": tokens, "segments": segments, "deleted_fraction": 0.0,
            "bytes_on_disk": size, "bytes_per_token_vectors": None,
            "bytes_per_token_total": round(size / tokens, 2) if size and tokens else None,
        }

    def close(self) -> None:
        if getattr(self, "_b", None) is None:
            return
        with self._guard("closing"):
            try:
                self._optimize()
                self._b.flush()
            finally:
                self._b.close()
        self._b = None

    def __enter__(self) -> "QdrantStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QdrantStore({str(self.spec)!r})"


def _one_line(exc: BaseException) -> str:
    """An exception as one line (qdrant-client's messages carry the raw response on further lines)."""
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())


def _disk_bytes(path: Path) -> int:
    """Bytes a file occupies: Qdrant Edge preallocates sparse files (196 MB apparent for 1.2 MB used)."""
    st = path.stat()
    blocks = getattr(st, "st_blocks", None)  # POSIX; Windows reports the size only
    return min(st.st_size, blocks * 512) if blocks is not None else st.st_size


def _document(payload: Mapping[str, Any]) -> Document:
    return Document(payload["id"], payload.get("text"), payload.get("metadata") or {}, payload.get("parent"))
