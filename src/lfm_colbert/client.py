"""`RemoteIndex`: a typed client for an `lfm-colbert serve` server, with the `Index` API.

    >>> from lfm_colbert.client import RemoteIndex
    >>> index = RemoteIndex("http://127.0.0.1:8000", api_key=None)
    >>> index.search("¿Dónde viven los pingüinos?", k=5, filter={"lang": "en"})
    [Hit(id='p1', score=27.4, text='Penguins live in the south.', metadata={'lang': 'en'})]

Results are the library's own types (`Hit`, `Document`, `Ranked`, `Explanation`). Every failure is
an `lfm_colbert.errors.RemoteError` (a `RemoteInputError`, which is also an `InputError`, when the
server refused the input), never an httpx exception. 429 and 503 answers are retried after the
Retry-After the server sends, a few times.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import numpy as np

from lfm_colbert.errors import InputError, RemoteError, RemoteInputError
from lfm_colbert.explain import Explanation, TokenMatch
from lfm_colbert.index import Document, Hit, Ranked

# Server error codes that mean "your input", as InputError does locally.
_INPUT_CODES = {"invalid_json", "invalid_request", "not_found", "conflict", "too_large", "too_many_texts",
                "text_too_long", "unsupported_media_type", "bad_request"}
_PAGE = 1000


class RemoteIndex:
    """An index served over HTTP(S) by `lfm-colbert serve`.

    url: the server's base URL (a path prefix behind a proxy is kept). api_key: sent as a bearer
    token (needed when the server has one). timeout: seconds per request. retries: how many times a
    429 / 503 answer is retried (waiting what Retry-After says, at most `max_wait` seconds each).
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, retries: int = 3,
                 max_wait: float = 10.0) -> None:
        try:
            import httpx
        except ImportError:
            raise ImportError("RemoteIndex needs httpx: pip install 'lfm-colbert[serve]'") from None

        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InputError(f"url must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.retries, self.max_wait = retries, max_wait
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url + "/", headers=headers, timeout=timeout)
        self._limits: dict[str, Any] | None = None

    # -- transport -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, params: Any = None, ok404: bool = False) -> Any:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                r = self._http.request(method, path, json=body, params=params)
            except httpx.TimeoutException as exc:
                raise RemoteError(f"{method} {self.url}/{path} timed out ({exc})") from None
            except httpx.HTTPError as exc:
                raise RemoteError(f"cannot reach the lfm-colbert server at {self.url}: {exc}") from None
            except RuntimeError as exc:  # httpx: the client was closed
                raise RemoteError(f"{self!r}: {exc}") from None
            if r.status_code < 400:
                try:
                    return r.json()
                except ValueError:
                    raise RemoteError(f"{method} {self.url}/{path}: the answer is not JSON", r.status_code) from None
            if ok404 and r.status_code == 404:
                return None
            error = self._error(r, method, path)
            if r.status_code in (429, 503) and error.retry_after is not None and attempt < self.retries:
                time.sleep(min(error.retry_after, self.max_wait))
                continue
            raise error
        raise AssertionError("unreachable")

    def _error(self, r: Any, method: str, path: str) -> RemoteError:
        try:
            body = r.json()
            code, detail = body.get("error"), body.get("detail") or r.reason_phrase
        except (ValueError, AttributeError):
            code, detail = None, (r.text[:200] or r.reason_phrase)
        retry = r.headers.get("retry-after")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        message = f"{method} {self.url}/{path} answered {r.status_code}: {detail}"
        cls = RemoteInputError if code in _INPUT_CODES else RemoteError
        return cls(message, r.status_code, code, retry_after)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RemoteIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteIndex({self.url!r})"

    # -- service -----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """{"status": "ready" | "loading" | ..., "ready": bool, ...}; a server still loading is not an error."""
        import httpx

        try:
            r = self._http.get("health")
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the lfm-colbert server at {self.url}: {exc}") from None
        if r.status_code not in (200, 503):
            raise self._error(r, "GET", "health")
        return r.json()

    def info(self) -> dict[str, Any]:
        """The server's model, index description (counts, sizes), metadata keys and limits."""
        info = self._request("GET", "info")
        self._limits = info.get("limits")
        return info

    def __len__(self) -> int:
        index = self.info().get("index")
        return int(index["documents"]) if index else 0

    # -- search ------------------------------------------------------------------------------------
    def search(
        self, query: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None,
        *, mode: str = "semantic", alpha: float | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-k hits for a query, or a list of them for a list of queries (as `Index.search`, modes included)."""
        hits = self._search(query, k, filter, explain=False, mode=mode, alpha=alpha)
        if isinstance(query, str):
            return [h for h, _ in hits]
        return [[h for h, _ in per] for per in hits]

    def explain(self, query: str, k: int = 10, filter: Mapping[str, Any] | None = None) -> list[tuple[Hit, Explanation]]:
        """Top-k hits, each with its score split over the query's tokens (see lfm_colbert.explain)."""
        if not isinstance(query, str):
            raise InputError("explain() takes one query string")
        return self._search(query, k, filter, explain=True)

    def _search(self, query: Any, k: int, filter: Mapping[str, Any] | None, explain: bool,
                mode: str = "semantic", alpha: float | None = None) -> Any:
        body: dict[str, Any] = {"k": k, "explain": explain}
        if mode != "semantic" or alpha is not None:  # older servers know no modes: send them only when asked
            body.update(mode=mode, alpha=alpha)
        if isinstance(query, str):
            body["query"] = query
        else:
            try:
                body["queries"] = list(query)
            except TypeError:
                raise InputError(f"query must be a string or a list of strings, not {type(query).__name__}") from None
        if filter is not None:
            body["filter"] = dict(filter)
        hits = self._request("POST", "search", body)["hits"]
        if isinstance(query, str):
            return [_hit(h) for h in hits]
        return [[_hit(h) for h in per] for per in hits]

    def rerank(self, query: str, documents: Sequence[str], k: int | None = None) -> list[Ranked]:
        """`documents` ordered by MaxSim against `query`, best first (the server needs no index for it)."""
        if isinstance(documents, str):
            raise InputError("rerank() takes a list of documents, not one string")
        body = {"query": query, "documents": list(documents), "k": k}
        return [Ranked(r["index"], r["score"], r["text"]) for r in self._request("POST", "rerank", body)["results"]]

    def encode(self, texts: str | Sequence[str], is_query: bool = False) -> list[np.ndarray]:
        """Token vectors, one float32 (tokens, dim) array per text, as `ColBERT.encode` returns them."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = self._request("POST", "encode", {"texts": texts, "is_query": is_query, "format": "base64"})
        return [np.frombuffer(base64.b64decode(v), dtype="<f4").reshape(shape).astype(np.float32)
                for v, shape in zip(out["vectors"], out["shapes"])]

    # -- documents -------------------------------------------------------------------------------
    def add(
        self,
        documents: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        upsert: bool = False,
    ) -> list[str]:
        """Add documents (ids generated by the server when not given); returns their ids.

        Sent in requests within the server's limits; each request is committed on its own, so a
        failure part-way leaves the earlier ones added (send the rest again with upsert=True).
        """
        if isinstance(documents, str):
            raise InputError("add() takes a list of documents, not one string")
        docs = list(documents)
        n = len(docs)
        ids_ = [None] * n if ids is None else list(ids)
        meta = [None] * n if metadata is None else list(metadata)
        if len(ids_) != n or len(meta) != n:
            raise InputError(f"got {n} documents but {len(ids_)} ids and {len(meta)} metadata")
        rows = [{"text": t, **({"id": i} if i is not None else {}), **({"metadata": dict(m)} if m else {})}
                for t, i, m in zip(docs, ids_, meta)]
        out: list[str] = []
        for chunk in self._chunks(rows):
            out += self._request("POST", "documents", {"documents": chunk, "upsert": upsert})["ids"]
        return out

    def upsert(self, documents: Sequence[str], ids: Sequence[str], metadata: Any = None) -> list[str]:
        """Add documents, replacing any with the same ids."""
        return self.add(documents, ids, metadata, upsert=True)

    def _chunks(self, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Requests of at most the server's max_texts documents and half its body limit."""
        if self._limits is None:
            try:
                self.info()
            except RemoteError:
                self._limits = {}
        limits = self._limits or {}
        max_docs = int(limits.get("max_texts", 256))
        max_bytes = int(limits.get("max_body_bytes", 4 << 20)) // 2
        chunks: list[list[dict[str, Any]]] = [[]]
        size = 0
        for row in rows:
            n = len(json.dumps(row, ensure_ascii=False).encode())
            if chunks[-1] and (len(chunks[-1]) >= max_docs or size + n > max_bytes):
                chunks.append([])
                size = 0
            chunks[-1].append(row)
            size += n
        return [c for c in chunks if c]

    def delete(self, ids: str | Sequence[str], missing_ok: bool = False) -> int:
        """Delete documents by id; returns how many were removed. Unknown ids are an error unless missing_ok."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not ids:
            raise InputError("no ids to delete")
        return int(self._request("DELETE", "documents", {"ids": ids, "missing_ok": missing_ok})["deleted"])

    def get(self, ids: str | Sequence[str]) -> Document | None | list[Document | None]:
        """The stored document with this id (None if there is none), or a list for a list of ids."""
        if isinstance(ids, str):
            doc = self._request("GET", "documents/" + quote(ids, safe=""), ok404=True)
            return None if doc is None else _document(doc)
        wanted = list(ids)
        out: list[Document | None] = []
        for start in range(0, len(wanted), 100):  # ids travel in the URL: keep it short
            docs = self._request("GET", "documents", params={"id": wanted[start : start + 100]})["documents"]
            out += [None if d is None else _document(d) for d in docs]
        return out

    def list(self, filter: Mapping[str, Any] | None = None, limit: int | None = None, after: str | None = None) -> list[Document]:
        """Documents in id order, those matching `filter` only, at most `limit` (all when None),
        starting after id `after`."""
        out: list[Document] = []
        while limit is None or len(out) < limit:
            page = _PAGE if limit is None else min(_PAGE, limit - len(out))
            params: dict[str, Any] = {"limit": page}
            if after is not None:
                params["after"] = after
            if filter is not None:
                params["filter"] = json.dumps(dict(filter))
            docs = [_document(d) for d in self._request("GET", "documents", params=params)["documents"]]
            out += docs
            if len(docs) < page:
                break
            after = docs[-1].id
        return out


def _hit(h: dict[str, Any]) -> Any:
    hit = Hit(h["id"], h["score"], h.get("text"), h.get("metadata") or {})
    e = h.get("explanation")
    if e is None:
        return hit, None
    matches = [TokenMatch(m["query_token"], m["kind"], _span(m["query_span"]), m["doc_token"], m["doc_text"],
                          _span(m["doc_span"]), m["score"]) for m in e["matches"]]
    return hit, Explanation(e["score"], matches)


def _span(span: Any) -> tuple[int, int] | None:
    return None if span is None else (int(span[0]), int(span[1]))


def _document(d: dict[str, Any]) -> Document:
    return Document(d["id"], d.get("text"), d.get("metadata") or {}, d.get("parent"))
