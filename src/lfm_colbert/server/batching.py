"""The inference thread: the one thread that runs the model and searches the index, batching what
arrives together.

On a CPU one query's forward pass is bound by streaming the model's weights, so queries from
several requests are encoded in one pass, and searches with the same k and filter share one scan
(`Index.search_vectors` over stacked queries). Nothing changes any result:

- queries are always `query_length` tokens wide (query expansion), so a query's batch-mates change
  none of its vectors; without expansion, only queries of the same token length share a pass
  (LFM2.5's centred convolution sees padding);
- a scan is shared only by searches with the same k and filter;
- documents (rerank, /encode, and the writer's adds) are encoded exactly as `ColBERT.encode` and
  `Index.add` batch them, never mixed with another request's.

Interactive work (search, rerank, encode) goes first; the writer's document batches take one
turn per cycle, so a large add slows searches down but never stops them.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lfm_colbert.explain import Explanation, explain
from lfm_colbert.index import Hit, Ranked
from lfm_colbert.scoring import maxsim
from lfm_colbert.server.settings import Batching

logger = logging.getLogger("lfm_colbert.server")


@dataclass
class SearchJob:
    queries: list[str]
    k: int
    filter: dict[str, Any] | None
    explain: bool
    mode: str = "semantic"  # or "lexical" (no query vectors needed), "hybrid"
    alpha: float | None = None
    future: Future = field(default_factory=Future)


@dataclass
class RerankJob:
    query: str
    documents: list[str]
    k: int | None
    explain: bool
    future: Future = field(default_factory=Future)


@dataclass
class EncodeJob:
    texts: list[str]
    is_query: bool
    future: Future = field(default_factory=Future)


@dataclass
class DocumentsJob:
    """One batch of a write's documents (background work): vectors, and which were truncated."""

    texts: list[str]
    future: Future = field(default_factory=Future)


Job = SearchJob | RerankJob | EncodeJob | DocumentsJob


def _query_texts(job: Job) -> list[str]:
    if isinstance(job, SearchJob):
        return [] if job.mode == "lexical" else job.queries  # BM25 alone needs no query vectors
    if isinstance(job, RerankJob):
        return [job.query]
    if isinstance(job, EncodeJob) and job.is_query:
        return job.texts
    return []


class InferenceWorker:
    """Owns the model and the reader index on one thread; `submit` a job, wait on its future.

    `open()` runs on the thread first and returns (model, reader index or None).
    """

    def __init__(self, open: Callable[[], tuple[Any, Any]], batching: Batching) -> None:
        self._open = open
        self.batching = batching
        self.model: Any = None
        self.index: Any = None
        self._interactive: collections.deque[Job] = collections.deque()
        self._background: collections.deque[DocumentsJob] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.batches = collections.Counter()  # queries per forward pass -> passes (for /info and tests)
        self._thread = threading.Thread(target=self._run, name="lfm-inference", daemon=True)

    # -- the other threads' side ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> Future:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the inference worker is stopped")
            (self._background if isinstance(job, DocumentsJob) else self._interactive).append(job)
            self._cond.notify()
        return job.future

    def stop(self, timeout: float | None = None) -> None:
        """Finish every queued job, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the inference thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.model, self.index = self._open()
        except BaseException as exc:  # reported through /health; the jobs queued meanwhile fail with it
            logger.error("could not load the model or the index: %s", exc)
            self.error = exc
            self.ready.set()
            self._fail_all(exc)
            return
        self.ready.set()
        while True:
            interactive, background = self._take()
            if not interactive and background is None:
                break
            try:
                if interactive:
                    self._serve(interactive)
                if background is not None:
                    self._run_job(background, self._encode_documents)
            except Exception as exc:  # a bug here must fail these requests, not stop the thread
                logger.exception("inference thread")
                for job in [*interactive, *([background] if background else [])]:
                    if not job.future.done():
                        job.future.set_exception(exc)
        if self.index is not None:
            self.index.close()

    def _fail_all(self, exc: BaseException) -> None:
        while True:
            with self._cond:
                jobs = list(self._interactive) + list(self._background)
                self._interactive.clear()
                self._background.clear()
                if not jobs and self._stopping:
                    return
                if not jobs:
                    self._cond.wait()
                    continue
            for job in jobs:
                job.future.set_exception(exc)

    def _take(self) -> tuple[list[Job], DocumentsJob | None]:
        """The next interactive batch (up to max_batch queries) and at most one background job."""
        b = self.batching
        with self._cond:
            idle = not (self._interactive or self._background)
            while not (self._interactive or self._background or self._stopping):
                self._cond.wait()
            if idle and b.enabled and b.wait_ms > 0 and self._interactive:
                # Idle until now: give requests arriving together a moment to join this pass (while
                # busy, the requests that arrive meanwhile queue up and form the next pass anyway).
                deadline = time.monotonic() + b.wait_ms / 1000
                while sum(len(_query_texts(j)) for j in self._interactive) < b.max_batch and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch: list[Job] = []
            n = 0
            while self._interactive:
                cost = max(1, len(_query_texts(self._interactive[0])))
                if batch and n + cost > b.max_batch:
                    break
                batch.append(self._interactive.popleft())
                n += cost
            background = self._background.popleft() if self._background else None
            return batch, background

    @staticmethod
    def _run_job(job: Job, fn: Callable[[Any], Any]) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(fn(job))
        except BaseException as exc:
            job.future.set_exception(exc)

    def _serve(self, jobs: list[Job]) -> None:
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if jobs:
            self._cycle(jobs)

    def _cycle(self, jobs: list[Job]) -> None:
        """Encode every query of `jobs` together, share the scans, then finish each job."""
        try:
            qvecs = self._encode_queries(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            for job in jobs:  # find the one that fails; the others still get their answers
                self._cycle([job])
            return
        self._finish(jobs, qvecs)

    def _finish(self, jobs: list[Job], qvecs: dict[int, list[np.ndarray]]) -> None:
        # A scan is shared by searches with the same k, filter and query widths: stacking queries of
        # other widths would pad them, and a float32 product of another shape can round differently.
        searches: dict[tuple[Any, ...], list[SearchJob]] = {}
        for job in jobs:
            if isinstance(job, SearchJob):
                widths = tuple(len(v) for v in qvecs[id(job)])
                key = (job.k, json.dumps(job.filter, sort_keys=True, ensure_ascii=False), widths, job.mode, job.alpha)
                searches.setdefault(key, []).append(job)
        for group in searches.values():
            self._search(group, qvecs)
        for job in jobs:
            if isinstance(job, SearchJob):
                continue
            try:
                if isinstance(job, RerankJob):
                    job.future.set_result(self._rerank(job, qvecs[id(job)][0]))
                else:
                    job.future.set_result(qvecs[id(job)] if job.is_query else self._encode_texts(job.texts))
            except Exception as exc:
                job.future.set_exception(exc)

    def _encode_queries(self, jobs: list[Job]) -> dict[int, list[np.ndarray]]:
        """Every query text of `jobs`, in as few forward passes as leave each vector what the library
        gives for that request: with query expansion every query is query_length wide, so all share
        one pass; without it, single queries share a pass with those of the same token length, and a
        request's list of queries is encoded as `ColBERT.encode` batches it (padded together)."""
        out: dict[int, list[np.ndarray]] = {id(job): [] for job in jobs}
        units: list[list[tuple[int, str]]] = []  # each: one forward pass of (owner, text)
        if self.model.settings.do_query_expansion:
            units.append([(id(job), t) for job in jobs for t in _query_texts(job)])
        else:
            widths: dict[int, list[tuple[int, str]]] = {}
            for job in jobs:
                texts = _query_texts(job)
                if len(texts) == 1:
                    width = min(self.model.tokenizer.count_tokens(texts[0]), self.model.settings.query_length)
                    widths.setdefault(width, []).append((id(job), texts[0]))
                elif texts:
                    units.append([(id(job), t) for t in texts])
            units += widths.values()
        for unit in units:
            if not unit:
                continue
            texts = [t for _, t in unit]
            # A lone request's list keeps ColBERT.encode's own batch size; merged passes take everyone.
            size = 32 if len({owner for owner, _ in unit}) == 1 else len(texts)
            vecs = self.model.encode(texts, is_query=True, batch_size=size, show_progress_bar=False)
            self.batches[len(texts)] += 1
            for (owner, _), v in zip(unit, vecs):
                out[owner].append(v)
        return out

    def _search(self, group: list[SearchJob], qvecs: dict[int, list[np.ndarray]]) -> None:
        if self.index is None:
            for job in group:
                job.future.set_exception(LookupError("no index"))
            return
        try:
            first, texts = group[0], [q for job in group for q in job.queries]
            if first.mode == "lexical":
                results = self.index.search(texts, k=first.k, filter=first.filter, mode="lexical")
            else:
                stacked = [v for job in group for v in qvecs[id(job)]]
                results = self.index.search_vectors(stacked, k=first.k, filter=first.filter, texts=texts,
                                                    mode=first.mode, alpha=first.alpha)
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            for job in group:
                self._search([job], qvecs)
            return
        start = 0
        for job in group:
            hits = results[start : start + len(job.queries)]
            start += len(job.queries)
            try:
                if job.explain and job.mode != "lexical":  # BM25 hits have no token matches to show
                    explained = [self._explain_hits(q, v, h) for q, v, h in zip(job.queries, qvecs[id(job)], hits)]
                else:
                    explained = [[None] * len(h) for h in hits]
                job.future.set_result([list(zip(h, e)) for h, e in zip(hits, explained)])
            except Exception as exc:
                job.future.set_exception(exc)

    def _explain_hits(self, query: str, qvec: np.ndarray, hits: list[Hit]) -> list[Explanation | None]:
        """Token matches of each hit, on its stored vectors (None for a hit deleted meanwhile)."""
        if not hits:
            return []
        try:
            vectors: list[np.ndarray | None] = list(self.index.vectors([h.id for h in hits]))
        except Exception:  # a hit was deleted since the search: explain the others
            vectors = []
            for h in hits:
                try:
                    vectors.append(self.index.vectors([h.id])[0])
                except Exception:
                    vectors.append(None)
        return self._explain(query, qvec, [h.text for h in hits], vectors)

    def _explain(self, query: str, qvec: np.ndarray, texts: list[str | None], vectors: list[np.ndarray | None]) -> list[Explanation | None]:
        q_spans = self.model.token_spans([query], is_query=True)[0]
        with_text = [i for i, t in enumerate(texts) if t and t.strip()]
        spans = dict(zip(with_text, self.model.token_spans([texts[i] for i in with_text]))) if with_text else {}
        prefix = self.model.settings.query_prefix
        return [None if v is None else explain(qvec, v, query, q_spans, texts[i], spans.get(i), prefix)
                for i, v in enumerate(vectors)]

    def _rerank(self, job: RerankJob, qvec: np.ndarray) -> list[tuple[Ranked, Explanation | None]]:
        """As `lfm_colbert.rerank` does it: the documents encoded in PyLate's batches, scored by MaxSim."""
        if not job.documents:
            return []
        docs = self._encode_texts(job.documents)
        scores = maxsim(qvec, docs)
        order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))[: job.k]
        explained = self._explain(job.query, qvec, [job.documents[i] for i in order], [docs[i] for i in order]) \
            if job.explain else [None] * len(order)
        return [(Ranked(i, float(scores[i]), job.documents[i]), e) for i, e in zip(order, explained)]

    def _encode_texts(self, texts: list[str]) -> list[np.ndarray]:
        return self.model.encode(texts, is_query=False, batch_size=32, show_progress_bar=False)

    def _encode_documents(self, job: DocumentsJob) -> tuple[list[np.ndarray], list[bool]]:
        limit = self.model.settings.document_length
        truncated = [self.model.tokenizer.count_tokens(t) > limit for t in job.texts]
        return self._encode_texts(job.texts), truncated

