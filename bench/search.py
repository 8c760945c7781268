"""Search benchmark: exact vs compressed (2 / 4 bit) vs peers, on the same vectors, in one run.

Reports build time, bytes per token, queries per second (one query at a time), recall@10
against our exact search, and peak memory (RSS high-water mark of this process after each step).

Corpora:
  clustered  synthetic clustered token vectors (lfm_colbert.index.synthetic_vectors)
  scifact    SciFact documents encoded by a *full-size synthetic* (random-weight) checkpoint;
             encoding is slow here, so --scifact-docs documents are encoded, and further documents
             are made by joining random spans of 3 encoded ones, slightly perturbed (stated in the output).

Peers on the same vectors: maxsim-cpu (brute-force MaxSim, Rust) and voyager (token-level HNSW
then exact MaxSim rerank of the candidate documents, as PyLate's Voyager index does).

    python bench/search.py                         # 10k docs, both corpora (a few minutes)
    python bench/search.py --sizes 10000 100000    # the full table (much longer; 100k exact ~2.5 GiB)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lfm_colbert.index import Index
from lfm_colbert.index.synthetic_vectors import clustered_documents, queries_for
from lfm_colbert.scoring import maxsim

MODEL = {"model_id": "bench-vectors", "variant": "none", "dim": 128, "fingerprint": "bench"}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def recall(got: list[list[str]], ref: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(got, ref)]))


def scifact_vectors(n_encode: int, n_queries: int, seed: int = 0, checkpoint: Path | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from lfm_colbert import ColBERT
    from lfm_colbert.synthetic import write_checkpoint

    corpus = SHARED / "scifact" / "corpus.jsonl"
    queries = SHARED / "scifact" / "queries.jsonl"
    docs = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            docs.append(f"{r.get('title', '')}\n\n{r['text']}")
            if len(docs) >= n_encode:
                break
    qs = [json.loads(l)["text"] for l in open(queries, encoding="utf-8")][:n_queries]
    tmp = Path(tempfile.mkdtemp())
    if checkpoint is not None:  # an existing full-size synthetic checkpoint saves writing one
        ckpt = checkpoint
    else:
        ckpt = write_checkpoint(tmp / "full", size="full", variant="lfm2.5", seed=seed, dtype="bfloat16",
                                tokenizer_file=SHARED / "lfm2-tokenizer" / "tokenizer.json")
    model = ColBERT(ckpt, backend="torch", document_length=256, dtype="bfloat16")
    t = time.perf_counter()
    dv = model.encode(docs, batch_size=16, show_progress_bar=True)
    qv = model.encode(qs, is_query=True, batch_size=32)
    ntok = sum(len(d) for d in dv)
    print(f"  encoded {len(dv)} SciFact docs ({ntok} tokens, cut at 256) + {len(qv)} queries with a full-size "
          f"synthetic checkpoint in {time.perf_counter() - t:.0f}s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return dv, qv


def tile(docs: list[np.ndarray], n: int, seed: int = 0, noise: float = 0.05, parts: int = 3) -> list[np.ndarray]:
    """Reach n documents: after the encoded ones, each new document joins random spans of `parts` encoded
    documents (about 1/parts of each) and is perturbed slightly (renormalised).

    Plain perturbed copies would leave dozens of near-duplicates per source document, so the top 10 would be
    a tie decided by the perturbation and recall@10 against exact search would measure nothing.
    """
    rng = np.random.default_rng(seed)
    out = list(docs[:n])
    while len(out) < n:
        spans = []
        for i in rng.choice(len(docs), size=parts, replace=False):
            d = docs[i]
            w = max(1, len(d) // parts)
            s = int(rng.integers(0, len(d) - w + 1))
            spans.append(d[s : s + w])
        v = np.concatenate(spans)
        v = v + noise * rng.standard_normal(v.shape).astype(np.float32) / np.sqrt(v.shape[1])
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return out


def run_ours(name: str, docs, queries, k: int, compress: int | None, workdir: Path, rescore: bool = False) -> dict:
    path = workdir / name
    t = time.perf_counter()
    index = Index(path, MODEL, compress=compress, rescore=rescore)
    index.add_vectors(docs, ids=[str(i) for i in range(len(docs))])
    build = time.perf_counter() - t
    info = index.info()
    index.search_vectors(queries[0], k=k)  # warm-up: loads segments, builds scan buckets
    t = time.perf_counter()
    hits = [index.search_vectors(q, k=k + 1) for q in queries]  # one more, to see how close rank k+1 is
    qps = len(queries) / (time.perf_counter() - t)
    res = [[h.id for h in hs[:k]] for hs in hits]
    gaps = [(hs[k - 1].score - hs[k].score) / abs(hs[k - 1].score) for hs in hits if len(hs) > k and hs[k - 1].score]
    index.close()
    shutil.rmtree(path, ignore_errors=True)
    return {"build_s": build, "bytes_per_token": info["bytes_per_token_vectors"],
            "bytes_per_token_all": info["bytes_per_token_total"], "qps": qps, "ids": res,
            "gap": float(np.median(gaps)) if gaps else float("nan")}


def run_maxsim_cpu(docs, queries, k: int) -> dict | None:
    try:
        import maxsim_cpu
    except ImportError:
        return None
    t = time.perf_counter()
    store = [np.ascontiguousarray(d, dtype=np.float32) for d in docs]
    build = time.perf_counter() - t
    t = time.perf_counter()
    res = []
    for q in queries:
        s = np.asarray(maxsim_cpu.maxsim_scores_variable(np.ascontiguousarray(q, dtype=np.float32), store))
        res.append([str(i) for i in np.argsort(-s)[:k]])
    return {"build_s": build, "bytes_per_token": 512.0, "qps": len(queries) / (time.perf_counter() - t), "ids": res}


def run_voyager(docs, queries, k: int, k_token: int = 64) -> dict | None:
    try:
        from voyager import Index as VIndex, Space
    except ImportError:
        return None
    flat = np.concatenate(docs).astype(np.float32)
    owner = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
    t = time.perf_counter()
    v = VIndex(Space.InnerProduct, num_dimensions=flat.shape[1], M=12, ef_construction=100)
    v.add_items(flat, num_threads=-1)
    build = time.perf_counter() - t
    t = time.perf_counter()
    res = []
    for q in queries:
        ids, _ = v.query(q, k=k_token, num_threads=-1)  # (Q, k_token) token neighbours
        cand = np.unique(owner[ids.reshape(-1)])
        s = maxsim(q, [docs[c] for c in cand])
        res.append([str(cand[i]) for i in np.argsort(-s)[:k]])
    qps = len(queries) / (time.perf_counter() - t)
    return {"build_s": build, "bytes_per_token": None, "qps": qps, "ids": res}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--corpora", nargs="+", default=["clustered", "scifact"], choices=["clustered", "scifact"])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--scifact-docs", type=int, default=200, help="SciFact documents actually encoded")
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 2], choices=[2, 4], help="compressed variants to run")
    ap.add_argument("--rescore", action="store_true", help="also run compressed indexes that rescore on float16 vectors")
    ap.add_argument("--no-voyager", action="store_true", help="skip the voyager peer (HNSW build is slow)")
    ap.add_argument("--checkpoint", type=Path, help="full-size synthetic checkpoint to encode SciFact with")
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lfm-bench-"))
    rows = []
    base = {}
    if "scifact" in args.corpora:
        if not (SHARED / "scifact" / "corpus.jsonl").exists():
            print(f"skipping scifact: {SHARED / 'scifact'} not found", file=sys.stderr)
        else:
            base["scifact"] = scifact_vectors(args.scifact_docs, args.queries, checkpoint=args.checkpoint)
    for corpus in args.corpora:
        for n in args.sizes:
            if corpus == "clustered":
                docs, _ = clustered_documents(n, n_clusters=4096, tokens=(60, 140), noise=0.4, seed=0)
                queries = queries_for(docs, args.queries)
                note = "synthetic clustered"
            elif corpus in base:
                dv, qv = base[corpus]
                docs, queries = tile(dv, n), qv
                note = f"{len(dv)} encoded SciFact docs, then spans of 3 joined + perturbed up to {n}"
            else:
                continue
            ntok = sum(len(d) for d in docs)
            print(f"\n== {corpus}: {n} docs, {ntok} tokens ({note}) ==", flush=True)
            results = {}
            variants = [("exact", None, False)] + [(f"plaid-{b}bit", b, False) for b in args.bits]
            variants += [(f"plaid-{b}bit+rescore", b, True) for b in args.bits] if args.rescore else []
            for label, compress, rescore in variants:
                results[label] = r = run_ours(label, docs, queries, 10, compress, workdir, rescore)
                if compress is None:
                    # Recall against exact counts swaps at the rank-10 boundary; when ranks 10 and 11 are
                    # near-ties, any approximate score swaps them, so print how close they are.
                    print(f"  exact: median gap between ranks 10 and 11 = {100 * r['gap']:.2f}% of the 10th score", flush=True)
                r["peak_gib"] = peak_gib()
                print(f"  {label:12s} build {r['build_s']:.1f}s  qps {r['qps']:.2f}  x exact "
                      f"{r['qps'] / results['exact']['qps']:.1f}  recall@10 {recall(r['ids'], results['exact']['ids']):.4f}", flush=True)
            peers = {"maxsim-cpu": run_maxsim_cpu(docs, queries, 10)}
            if not args.no_voyager:
                peers["voyager-hnsw"] = run_voyager(docs, queries, 10)
            for label, r in peers.items():
                if r is not None:
                    r["peak_gib"] = peak_gib()
                    results[label] = r
                    print(f"  {label:12s} build {r['build_s']:.1f}s  qps {r['qps']:.1f}", flush=True)
            ref = results["exact"]["ids"]
            for label, r in results.items():
                rows.append({"corpus": corpus, "docs": n, "tokens": ntok, "method": label,
                             "build_s": round(r["build_s"], 2), "bytes_per_token": r["bytes_per_token"],
                             "disk_bytes_per_token": r.get("bytes_per_token_all"),
                             "qps": round(r["qps"], 2), "speedup_vs_exact": round(r["qps"] / results["exact"]["qps"], 2),
                             "recall@10_vs_exact": round(recall(r["ids"], ref), 4), "peak_rss_gib": round(r["peak_gib"], 2),
                             "exact_rank10_gap": round(results["exact"]["gap"], 5)})
    print("\n| corpus | docs | method | build s | bytes/token searched | on disk | QPS | x exact | recall@10 vs exact | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['corpus']} | {r['docs']} | {r['method']} | {r['build_s']} | {r['bytes_per_token']} "
              f"| {r['disk_bytes_per_token'] or '-'} | {r['qps']} "
              f"| {r['speedup_vs_exact']} | {r['recall@10_vs_exact']} | {r['peak_rss_gib']} |")
    print("\npeak RSS is the process high-water mark after each step (cumulative, not per method).")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
