"""`lfm-colbert serve [DIR]`: the HTTP search service and its demo page (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from lfm_colbert.cli.options import add_placement
from lfm_colbert.errors import InputError

HELP = """\
Serve an index over HTTP: search, rerank, encode, document updates, and a demo page at / that
anyone can try in a browser (search box, filters, matched words highlighted). The model loads in
the background; GET /health answers 200 once it is ready. The API is described at /docs.

DIR is created empty when missing (unless --read-only); without DIR only /rerank and /encode work.
On loopback (the default 127.0.0.1) an API key is optional; on any other address the server
refuses to start without one. Give it in the LFM_COLBERT_API_KEY environment variable (or
--api-key, which other users of this machine can see in the process list); clients send
"Authorization: Bearer KEY". SIGTERM (or Ctrl-C) stops taking requests, finishes the ones in
progress (writes are committed, never half-written) and exits.

Queries that arrive together are encoded in one forward pass (--max-batch, --batch-wait-ms;
--max-batch 1 turns it off), with the same results as one at a time. OpenMP threads sleep rather
than spin while they wait (OMP_WAIT_POLICY=PASSIVE, unless set otherwise), so the server does not
slow down to a crawl when something else needs the CPU.

examples:
  lfm-colbert index examples/corpus --index demo-index && lfm-colbert serve demo-index
  lfm-colbert serve demo-index --port 9000 --read-only
  LFM_COLBERT_API_KEY=$(openssl rand -hex 16) lfm-colbert serve demo-index --host 0.0.0.0
  lfm-colbert serve --model ./LFM2.5-ColBERT-350M           # rerank / encode only
  curl -s localhost:8000/search -H 'content-type: application/json' -d '{"query": "¿dónde viven los pingüinos?", "k": 3}'
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="serve an index over HTTP, with a demo page", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", nargs="?", default=None, metavar="DIR", help="index directory (optional)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--model", "-m", default=None, help="hub id or local checkpoint (default: the index's model)")
    add_placement(p)
    p.add_argument("--api-key", default=None, help="API key clients must send (default: $LFM_COLBERT_API_KEY)")
    p.add_argument("--read-only", action="store_true", help="refuse every write (POST / DELETE /documents)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes, each with its own copy of the model (default 1; writes from several "
                        "wait for each other)")
    g = p.add_argument_group("micro-batching")
    g.add_argument("--max-batch", type=int, default=8, help="queries per forward pass at most (default 8; 1: off)")
    g.add_argument("--batch-wait-ms", type=float, default=2.0,
                   help="how long an idle server waits for more queries to join a pass (default 2)")
    g = p.add_argument_group("limits (each answered with a JSON error)")
    g.add_argument("--max-body-mb", type=float, default=4.0, help="request body size (default 4; 413)")
    g.add_argument("--max-texts", type=int, default=256, help="texts, documents or ids per request (default 256; 413)")
    g.add_argument("--max-text-chars", type=int, default=16_384, help="characters per text (default 16384; 413)")
    g.add_argument("--max-k", type=int, default=1000, help="results per query (default 1000; 422)")
    g.add_argument("--max-concurrent", type=int, default=64,
                   help="requests in the server at once, queued included (default 64; then 503 + Retry-After)")
    g.add_argument("--max-per-client", type=int, default=32,
                   help="concurrent requests per client address (default 32; then 429 + Retry-After; 0: no bound)")
    p.add_argument("--drain-timeout", type=float, default=30.0,
                   help="seconds SIGTERM waits for requests in progress (default 30; writes always finish)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> tuple[Any, Any]:
    from lfm_colbert.server.settings import Batching, Limits

    limits = Limits(max_body_bytes=int(args.max_body_mb * (1 << 20)), max_texts=args.max_texts,
                    max_text_chars=args.max_text_chars, max_k=args.max_k, max_concurrent=args.max_concurrent,
                    max_per_client=args.max_per_client)
    return limits, Batching(max_batch=args.max_batch, wait_ms=args.batch_wait_ms)


# OpenMP threads that spin while waiting stall each other as soon as anything else wants the CPU
# (the server's own HTTP thread, its clients, other programs): on this project's 2-core machine
# with a load of 5, one query took 315-420 ms with GNU OpenMP's default policy and 95 ms with
# PASSIVE. A server shares its machine, so it sleeps instead, unless the user chose otherwise.
_OMP_POLICY = "PASSIVE"


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from lfm_colbert.server.app import CONFIG_ENV, create_app
    from lfm_colbert.server.settings import API_KEY_ENV, check_bind

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    check_bind(args.host, api_key)
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, not {args.port}")
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, not {args.workers}")
    if args.max_body_mb <= 0:
        raise InputError(f"--max-body-mb must be positive, not {args.max_body_mb}")
    if args.index is not None:
        _check_index_dir(args.index, args.read_only)
    limits, batching = _settings(args)
    if "torch" not in sys.modules:  # read once, when the OpenMP runtime loads (workers inherit it)
        os.environ.setdefault("OMP_WAIT_POLICY", _OMP_POLICY)
    common = {"host": args.host, "port": args.port, "log_level": args.log_level,
              "timeout_graceful_shutdown": args.drain_timeout, "access_log": args.log_level == "debug"}
    logging.getLogger("lfm_colbert.server").setLevel(args.log_level.upper())
    if args.workers > 1:
        # Each worker process builds its own app (and loads its own model) from this description.
        os.environ[CONFIG_ENV] = json.dumps({
            "index": args.index, "model": args.model, "read_only": args.read_only, "backend": args.backend,
            "device": args.device, "limits": limits.to_dict(), "batching": {"max_batch": batching.max_batch,
                                                                            "wait_ms": batching.wait_ms}})
        if api_key:
            os.environ[API_KEY_ENV] = api_key
        uvicorn.run("lfm_colbert.server.app:app_from_env", factory=True, workers=args.workers, **common)
        return 0
    app = create_app(args.index, args.model, api_key=api_key, read_only=args.read_only, limits=limits,
                     batching=batching, backend=args.backend, device=args.device)
    server = uvicorn.Server(uvicorn.Config(app, **common))
    _exit_if_load_fails(server, app)
    server.run()
    error = app.state.engine.error
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _check_index_dir(path: str, read_only: bool) -> None:
    """Fail before binding when DIR cannot be served: not an index and not creatable."""
    from pathlib import Path

    from lfm_colbert.index import Index

    p = Path(path)
    if (p / "manifest.json").is_file():
        Index(p, create=False).close()  # a clear error for a damaged or foreign index
    elif read_only:
        raise InputError(f"no lfm-colbert index at {p}; --read-only serves an existing index")
    elif p.exists() and not p.is_dir():
        raise InputError(f"{p} exists and is not a directory")


def _exit_if_load_fails(server: Any, app: Any) -> None:
    """Stop the server when the model or index cannot be loaded, instead of serving 503s forever."""
    import threading

    engine = app.state.engine

    def watch() -> None:
        engine.worker.ready.wait()
        if engine.worker.error is not None:
            server.should_exit = True

    threading.Thread(target=watch, name="lfm-load-watch", daemon=True).start()
