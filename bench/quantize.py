"""Benchmark the MLX conversions on a full-size (350M) synthetic checkpoint.

For each precision: size on disk, worst and mean per-token cosine against PyTorch fp32 (the
`lfm-colbert verify` probes, plus every SciFact query and document token), and the agreement of
MaxSim top-10 rankings with fp32 on SciFact queries against a few hundred SciFact documents.
It also measures the token-embedding choice (quantized or bf16) for each quantized precision.

The checkpoint has RANDOM weights: the numbers measure how far each format moves the vectors
of a network with the real shapes, not retrieval quality. Trained weights usually fare better.

Fidelity numbers come from the PyTorch backend running the dequantized weights in fp32 (what a
Linux user gets). `--mlx-check` also runs the MLX backend's native quantized kernels on the short
prompts and reports the worst cosine between MLX and PyTorch on the same converted file.

    python bench/quantize.py                       # ~17 min on 2 cores (PyTorch fp32: ~50 tokens/s)
    python bench/quantize.py --docs 100 --queries 10 --no-embedding-study --no-mlx-check   # quicker

The alternative-embedding rows are measured on the verify probes only (no SciFact), to save time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def load_scifact(n_queries: int, n_docs: int) -> tuple[list[str], list[str]]:
    """The first `n_queries` test queries, and their relevant documents filled up to `n_docs`."""
    folder = SHARED / "scifact"
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(folder / "queries.jsonl", encoding="utf-8"))}
    corpus = {d["_id"]: (d.get("title", "") + ". " + d["text"]).strip() for d in
              map(json.loads, open(folder / "corpus.jsonl", encoding="utf-8"))}
    qrels: dict[str, list[str]] = {}
    for line in open(folder / "qrels" / "test.tsv", encoding="utf-8").read().splitlines()[1:]:
        qid, did, _ = line.split("\t")
        qrels.setdefault(qid, []).append(did)
    qids = [q for q in qrels if q in queries][:n_queries]
    doc_ids = list(dict.fromkeys(d for q in qids for d in qrels[q] if d in corpus))
    doc_ids += [d for d in corpus if d not in set(doc_ids)][: max(0, n_docs - len(doc_ids))]
    return [queries[q] for q in qids], [corpus[d] for d in doc_ids[:n_docs]]


def encode_all(model, probes, queries, docs, doc_length) -> dict[str, list[np.ndarray]]:
    """The verify probes (default settings), then SciFact with documents cut to `doc_length` tokens."""
    out = {name: model.encode(texts, is_query=is_query, batch_size=16) for name, (texts, is_query) in probes.items()}
    if not queries:
        return out
    default = model.tokenizer.settings
    model.tokenizer.settings = default.replace(document_length=doc_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation is intended here
        out["scifact queries"] = model.encode(queries, is_query=True, batch_size=16)
        out["scifact docs"] = model.encode(docs, is_query=False, batch_size=16)
    model.tokenizer.settings = default
    return out


def cosines(ref: list[np.ndarray], got: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([(r * g).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(g, axis=-1))
                           for r, g in zip(ref, got)])


def top10(queries: list[np.ndarray], docs: list[np.ndarray]) -> list[set[int]]:
    from lfm_colbert.scoring import maxsim

    return [set(np.argsort(-np.asarray(maxsim(q, docs)))[:10].tolist()) for q in queries]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=30, help="SciFact test queries (default 30)")
    p.add_argument("--docs", type=int, default=200, help="SciFact documents (default 200)")
    p.add_argument("--doc-length", type=int, default=32,
                   help="SciFact document token limit (default 32: title and first words; CPU time)")
    p.add_argument("--precisions", default="bf16,8bit,4bit,mxfp4")
    p.add_argument("--no-embedding-study", dest="embedding_study", action="store_false",
                   help="skip the alternative embedding choice for each quantized precision")
    p.add_argument("--no-mlx-check", dest="mlx_check", action="store_false",
                   help="skip running MLX's native kernels on the short prompts")
    p.add_argument("--workdir", default=None, help="keep checkpoints here (default: a temporary directory)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    args = p.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from lfm_colbert import ColBERT
    from lfm_colbert.convert import DEFAULT_QUANTIZE_EMBEDDING, convert
    from lfm_colbert.synthetic import write_checkpoint
    from lfm_colbert.verify import PASSAGE, QUERIES, SHORT_PROMPTS

    print("NOTE: random-weight synthetic checkpoint (real LFM2.5-ColBERT-350M shapes). The numbers show how far "
          "each format moves the vectors, not retrieval quality; trained weights usually fare better.", flush=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lfm-quant-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    tok = SHARED / "lfm2-tokenizer" / "tokenizer.json"
    src = work / "src-bf16"
    if not (src / "config.json").exists():
        t = time.perf_counter()
        write_checkpoint(src, size="full", dtype="bfloat16", tokenizer_file=tok if tok.exists() else None)
        print(f"wrote the full-size bf16 source in {time.perf_counter() - t:.0f} s", flush=True)
    queries, docs = load_scifact(args.queries, args.docs)
    probes = {"short prompts": (SHORT_PROMPTS, False), "queries": (QUERIES, True), "passage": ([PASSAGE], False)}

    runs = []  # (label, precision, quantize_embedding, with SciFact)
    for prec in args.precisions.split(","):
        if prec == "bf16":
            runs.append(("bf16", prec, None, True))
            continue
        default = DEFAULT_QUANTIZE_EMBEDDING[prec]
        runs.append((prec + ("+emb" if default else ""), prec, default, True))
        if args.embedding_study:
            runs.append((prec + ("+emb" if not default else "") + " (alt)", prec, not default, False))

    t = time.perf_counter()
    ref_model = ColBERT(src, backend="torch", dtype="float32", device="cpu")
    ref = encode_all(ref_model, probes, queries, docs, args.doc_length)
    ref_top = top10(ref["scifact queries"], ref["scifact docs"])
    n_doc_tokens = sum(len(d) for d in ref["scifact docs"])
    print(f"fp32 reference: {len(queries)} queries, {len(docs)} docs ({n_doc_tokens} kept doc tokens) "
          f"in {time.perf_counter() - t:.0f} s", flush=True)
    del ref_model

    rows = []
    for label, prec, emb, with_scifact in tqdm(runs, desc="precisions", unit="run"):
        out = work / label.replace(" ", "_").replace("+", "-").replace("(", "").replace(")", "")
        t = time.perf_counter()
        res = convert(src, out, prec, quantize_embedding=emb, force=True, verify=False)
        conv_s = time.perf_counter() - t
        model = ColBERT(out, backend="torch", dtype="float32", device="cpu")
        got = encode_all(model, probes, queries if with_scifact else [], docs, args.doc_length)
        del model
        probe_cos = np.concatenate([cosines(ref[k], got[k]) for k in probes])
        all_cos = np.concatenate([cosines(ref[k], got[k]) for k in got])
        overlap = float("nan")
        if with_scifact:
            overlap = float(np.mean([len(a & b) / 10 for a, b in
                                     zip(ref_top, top10(got["scifact queries"], got["scifact docs"]))]))
        row = {"run": label, "precision": prec, "quantized_embedding": bool(emb), "bytes": res.weights_bytes,
               "probe_worst": float(probe_cos.min()), "probe_mean": float(probe_cos.mean()),
               "all_worst": float(all_cos.min()), "all_mean": float(all_cos.mean()),
               "top10_overlap": overlap, "convert_s": conv_s}
        if args.mlx_check:
            row["mlx_vs_torch_worst"] = mlx_check(out, SHORT_PROMPTS)
        rows.append(row)
        tqdm.write(json.dumps(row))
        if not args.workdir:
            shutil.rmtree(out, ignore_errors=True)

    print()
    print("precision          size (MB)  worst cos  mean cos  worst cos  mean cos  top-10 overlap")
    print("                              (verify probes)      (probes + SciFact tokens)  vs fp32")
    for r in rows:
        print(f"{r['run']:<18}{r['bytes'] / 1e6:>10.1f}{r['probe_worst']:>11.4f}{r['probe_mean']:>10.4f}"
              f"{r['all_worst']:>11.4f}{r['all_mean']:>10.4f}{r['top10_overlap']:>12.3f}"
              + (f"   mlx-vs-torch {r['mlx_vs_torch_worst']:.6f}" if "mlx_vs_torch_worst" in r else ""))
    print("(alt) rows: the other token-embedding choice, verify probes only (no SciFact).")
    print("Fidelity: PyTorch backend, fp32 compute on dequantized weights, vs the PyTorch fp32 reference. "
          "RANDOM weights: a proxy for format error, not retrieval quality.")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def mlx_check(path: Path, texts: list[str]) -> float:
    """Worst cosine between MLX (native quantized kernels) and PyTorch on the same converted file."""
    from lfm_colbert import ColBERT
    from lfm_colbert.models.mlx.backend import MLXBackend

    torch_model = ColBERT(path, backend="torch", dtype="float32", device="cpu")
    batch = torch_model.tokenize(texts, is_query=False)
    a = torch_model.backend.forward(batch["input_ids"], batch["attention_mask"])
    b = MLXBackend(torch_model.checkpoint, dtype="float32", device="cpu", dequantize=False).forward(
        batch["input_ids"], batch["attention_mask"])
    keep = batch["attention_mask"].astype(bool)
    return float((a[keep] * b[keep]).sum(-1).min())


if __name__ == "__main__":
    sys.exit(main())
