"""The HTTP service under load: requests/s and latency of /search and /rerank with query
micro-batching off (one query per forward pass) and on, in the same run.

A real `lfm-colbert serve` process (uvicorn) on a free loopback port serves an index of --docs
documents for the full-size synthetic LFM2.5 checkpoint (real config and tokenizer, random
weights; the documents' vectors are synthetic, so building the index costs no encoding). N
concurrent closed-loop clients (asyncio + httpx, in this process) send requests for a bounded
time each. The same run times the model alone (one query, then a batch of --max-batch queries),
which bounds what batching can gain on this CPU: at most max_batch x t(1) / t(max_batch).

    flock /tmp/lfm-bench.lock python bench/serve.py                      # the whole table
    python bench/serve.py --docs 500 --seconds 5 --clients 1,4           # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# As `lfm-colbert serve` runs (see cli/serve.py), for the model timed in this process too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LFM_COLBERT_SHARED", REPO.parent / "shared")) / "data"
CORPUS = REPO / "examples" / "corpus" / "passages.jsonl"


def cpu_header() -> str:
    model, flags = platform.processor() or "?", set()
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", info).group(1)
        flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    except (OSError, AttributeError):
        pass
    shown = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))
    return (f"{model}, {os.cpu_count()} CPUs, {' '.join(shown) or 'no AVX2'}, OMP_WAIT_POLICY="
            f"{os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.1f}")


def texts() -> tuple[list[str], list[str]]:
    """(queries, passages) in the 12 languages of the sample corpus."""
    passages = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = [q for q in (REPO / "examples" / "queries.txt").read_text(encoding="utf-8").splitlines()
               if q.strip() and not q.startswith("#")]
    queries += [p.split(".")[0][:80] for p in passages]  # first sentences, as questions' stand-ins
    return queries, passages


def build_index(path: Path, checkpoint: Path, n_docs: int) -> None:
    """An exact index of `n_docs` documents for the checkpoint's model: sample-corpus texts, synthetic
    clustered vectors of 60-140 tokens (the scan costs what real ones would)."""
    from lfm_colbert import ColBERT, Index
    from lfm_colbert.index.synthetic_vectors import clustered_documents

    if (path / "manifest.json").is_file():
        return
    model = ColBERT(checkpoint, backend="torch")
    vectors, _ = clustered_documents(n_docs, n_clusters=256, tokens=(60, 140), noise=0.4, seed=0)
    _, passages = texts()
    with Index(path, model) as index:
        index.add_vectors(vectors, ids=[f"d{i}" for i in range(n_docs)],
                          texts=[passages[i % len(passages)] for i in range(n_docs)],
                          metadata=[{"n": i} for i in range(n_docs)])


def model_floor(checkpoint: Path, batch: int, repeats: int = 5) -> tuple[float, float]:
    """Median seconds of one query's forward pass and of `batch` queries' in one pass."""
    from lfm_colbert import ColBERT

    model = ColBERT(checkpoint, backend="torch")
    queries, _ = texts()
    model.encode(queries[:batch], is_query=True)  # warm up
    out = []
    for n in (1, batch):
        times = []
        for r in range(repeats):
            t = time.perf_counter()
            model.encode(queries[r : r + n], is_query=True, batch_size=n)
            times.append(time.perf_counter() - t)
        out.append(float(np.median(times)))
    return out[0], out[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`lfm-colbert serve` in a child process, on loopback."""

    def __init__(self, index: Path, max_batch: int, wait_ms: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lfm_colbert", "serve", str(index), "--port", str(self.port), "--log-level", "warning",
             "--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms), "--max-concurrent", "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def load(url: str, endpoint: str, clients: int, seconds: float, max_requests: int, rerank_docs: int,
               seed: int = 0) -> dict:
    """`clients` closed-loop clients for `seconds` (or `max_requests` in all): requests/s and latencies."""
    import httpx

    queries, passages = texts()
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    sent = 0

    def body() -> dict:
        q = rng.choice(queries)
        if endpoint == "search":
            return {"query": q, "k": 10}
        return {"query": q, "documents": rng.sample(passages, rerank_docs)}

    async def client(http: httpx.AsyncClient, stop_at: float) -> None:
        nonlocal errors, sent
        while time.monotonic() < stop_at and sent < max_requests:
            sent += 1
            t = time.perf_counter()
            try:
                r = await http.post(f"/{endpoint}", json=body())
                ok = r.status_code == 200
            except Exception:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        warm = time.monotonic() + min(3.0, seconds / 3)  # warm-up, not counted
        await asyncio.gather(*(client(http, warm) for _ in range(clients)))
        latencies.clear()
        errors, sent = 0, 0
        start = time.monotonic()
        await asyncio.gather(*(client(http, start + seconds) for _ in range(clients)))
        elapsed = time.monotonic() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"endpoint": endpoint, "clients": clients, "requests": len(latencies), "errors": errors,
            "rps": len(latencies) / elapsed, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=REPO / ".bench" / "full-lfm2.5-bf16")
    ap.add_argument("--docs", type=int, default=2000, help="documents in the index (default 2000)")
    ap.add_argument("--clients", default="1,8", help="concurrent clients, comma separated (default 1,8)")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per row (default 15)")
    ap.add_argument("--max-requests", type=int, default=5000, help="bound on requests per row")
    ap.add_argument("--rerank-docs", type=int, default=8, help="documents per /rerank request (default 8)")
    ap.add_argument("--max-batch", type=int, default=8, help="queries per pass with batching on (default 8)")
    ap.add_argument("--wait-ms", type=float, default=2.0, help="batching window when idle (default 2)")
    ap.add_argument("--endpoints", default="search,rerank")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    if not (args.checkpoint / "model.safetensors").is_file():
        from lfm_colbert.synthetic import write_checkpoint

        tok = SHARED / "lfm2-tokenizer" / "tokenizer.json"
        print(f"writing a full-size synthetic checkpoint to {args.checkpoint} ...", flush=True)
        write_checkpoint(args.checkpoint, size="full", dtype="bfloat16", tokenizer_file=tok if tok.is_file() else None)
    index = REPO / ".bench" / f"serve-index-{args.docs}"
    build_index(index, args.checkpoint, args.docs)
    header = cpu_header()
    t1, tb = model_floor(args.checkpoint, args.max_batch)
    clients = [int(c) for c in args.clients.split(",")]
    endpoints = args.endpoints.split(",")

    rows = []
    for label, max_batch in (("off", 1), ("on", args.max_batch)):
        server = Server(index, max_batch, args.wait_ms)
        try:
            server.wait_ready()
            for endpoint in endpoints:
                for n in clients:
                    row = asyncio.run(load(server.url, endpoint, n, args.seconds, args.max_requests, args.rerank_docs))
                    row["batching"] = label
                    rows.append(row)
                    print(f"  {endpoint:6s} batching {label:3s} {n:2d} clients: {row['rps']:6.1f} req/s, "
                          f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, errors {row['errors']}", flush=True)
        finally:
            server.stop()

    print(f"\nServe benchmark: {header} at the end")
    print(f"full-size synthetic LFM2.5 ({args.checkpoint.name}), exact index of {args.docs:,} documents, "
          f"{args.seconds:g} s per row, closed-loop clients in this process (sharing the CPU)")
    print(f"model alone: one query {1000 * t1:.1f} ms, {args.max_batch} queries in one pass {1000 * tb:.1f} ms "
          f"({1000 * tb / args.max_batch:.1f} ms each): batching can gain at most {args.max_batch * t1 / tb:.2f}x here\n")
    print("| endpoint | batching | clients | requests/s | p50 ms | p99 ms | errors | load average |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['endpoint']} | {r['batching']} | {r['clients']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['errors']} | {r['load']:.1f} |")
    top = max(clients)
    print()
    for endpoint in endpoints:
        get = {(r["batching"], r["clients"]): r for r in rows if r["endpoint"] == endpoint}
        if ("on", top) in get and ("off", top) in get and ("on", 1) in get:
            gain = get[("on", top)]["rps"] / get[("off", top)]["rps"]
            p50 = get[("on", top)]["p50_ms"] / get[("on", 1)]["p50_ms"]
            print(f"{endpoint}: {top} clients, batching on / off: {gain:.2f}x requests/s (target >= 2.5x); "
                  f"p50 at {top} clients / 1 client: {p50:.2f}x (target < 2x)")
    print(f"errors in all: {sum(r['errors'] for r in rows)} (must be 0)")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "model_floor_s": [t1, tb], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
