"""Where a collection lives, written as one string the CLI can take wherever it takes an index directory.

    DIR                                    an embedded index (lfm_colbert.index.Index)
    qdrant+http://host:6333/COLLECTION     a Qdrant server (also qdrant+https://; a path before
                                           COLLECTION is the server's URL prefix)
    qdrant+path:DIR                        qdrant-client's local mode, persisted in DIR
    qdrant+memory:                         qdrant-client's local mode in memory (tests, demos)
    qdrant+edge:DIR                        Qdrant Edge (qdrant-edge-py): Qdrant's engine in-process

Options go in a query string: `?collection=NAME` (local mode; default "lfm_colbert"),
`?dense=1` (a new collection also stores a dense prefetch vector per document),
`?prefetch=N` (searches take N dense candidates and rank them by MaxSim), `?grpc=1` (a server
over gRPC, which sends vectors at a quarter of JSON's size). A server's API key is read from
$QDRANT_API_KEY, never from the string (it would end up in shell histories and logs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from lfm_colbert.errors import InputError

SCHEMES = ("qdrant+http", "qdrant+https", "qdrant+path", "qdrant+memory", "qdrant+edge")
DEFAULT_COLLECTION = "lfm_colbert"
_OPTIONS = {"collection", "dense", "prefetch", "grpc"}
_NAME = re.compile(r"^[A-Za-z0-9_\-.]{1,255}$")


@dataclass(frozen=True)
class StoreSpec:
    kind: str  # "server", "path", "memory" or "edge"
    collection: str
    url: str | None = None  # server: scheme://host[:port]
    prefix: str | None = None  # server: URL path before the collection
    path: str | None = None  # path / edge: a local directory
    dense: bool | None = None  # None: as the collection was created (False for a new one)
    prefetch: int | None = None
    grpc: bool = False

    def __str__(self) -> str:
        opts = [] if self.kind in ("server", "edge") else [f"collection={self.collection}"]
        opts += [f"dense={int(self.dense)}"] if self.dense is not None else []
        opts += [f"prefetch={self.prefetch}"] if self.prefetch else []
        opts += ["grpc=1"] if self.grpc else []
        query = "?" + "&".join(opts) if opts else ""
        if self.kind == "server":
            return f"qdrant+{self.url}{'/' + self.prefix if self.prefix else ''}/{self.collection}{query}"
        return f"qdrant+{self.kind}:{self.path or ''}{query}"


def is_store_spec(spec: object) -> bool:
    """Whether `spec` names a Qdrant collection rather than an index directory."""
    return isinstance(spec, str) and spec.lower().startswith("qdrant+")


def _flag(name: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise InputError(f"?{name}= takes 1 or 0, not {value!r}")


def parse_spec(spec: str) -> StoreSpec:
    """Parse a `qdrant+...` string; a clear error names what is wrong with it."""
    if not is_store_spec(spec):
        raise InputError(f"{spec!r} is not a Qdrant store (qdrant+http://host:6333/COLLECTION, qdrant+path:DIR, qdrant+edge:DIR)")
    scheme, sep, rest = spec.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise InputError(f"unknown store {spec!r}: use one of {', '.join(s + ':' for s in SCHEMES)}")
    body, _, query = rest.partition("?")
    opts: dict[str, str] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in _OPTIONS:
            raise InputError(f"unknown option ?{key}= in {spec!r} (known: {', '.join(sorted(_OPTIONS))})")
        opts[key] = values[-1]
    prefetch = None
    if "prefetch" in opts:
        if not opts["prefetch"].isdigit() or int(opts["prefetch"]) < 1:
            raise InputError(f"?prefetch= takes a positive number of candidates, not {opts['prefetch']!r}")
        prefetch = int(opts["prefetch"])
    common = dict(dense=_flag("dense", opts["dense"]) if "dense" in opts else None, prefetch=prefetch,
                  grpc=_flag("grpc", opts.get("grpc", "0")))
    collection = opts.get("collection", DEFAULT_COLLECTION)
    if scheme in ("qdrant+http", "qdrant+https"):
        parts = urlsplit(f"{scheme[len('qdrant+'):]}:{body}")
        segments = [s for s in parts.path.split("/") if s]
        if not parts.hostname or not segments:
            raise InputError(f"{spec!r}: a server store is qdrant+http://HOST[:PORT]/COLLECTION")
        if "collection" in opts:
            raise InputError(f"{spec!r}: a server store names its collection in the path, not ?collection=")
        collection = segments[-1]
        url = f"{parts.scheme}://{parts.netloc}"
        return _checked(StoreSpec("server", collection, url=url, prefix="/".join(segments[:-1]) or None, **common))
    if common["grpc"]:
        raise InputError(f"{spec!r}: ?grpc= applies to a server (qdrant+http://...)")
    if scheme == "qdrant+memory":
        if body:
            raise InputError(f"{spec!r}: qdrant+memory: takes no path")
        return _checked(StoreSpec("memory", collection, **common))
    if not body:
        raise InputError(f"{spec!r}: give a directory, e.g. {scheme}:my-store")
    if scheme == "qdrant+edge":
        if "collection" in opts:
            raise InputError(f"{spec!r}: an edge store is one collection; ?collection= does not apply")
        return StoreSpec("edge", "edge", path=body, **common)
    return _checked(StoreSpec("path", collection, path=body, **common))


def _checked(spec: StoreSpec) -> StoreSpec:
    if not _NAME.match(spec.collection):
        raise InputError(f"bad collection name {spec.collection!r}: use letters, digits, '_', '-' or '.'")
    return spec
