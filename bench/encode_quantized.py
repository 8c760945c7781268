"""The quantized rows of bench/encode.py: 8-bit and 4-bit builds run natively in PyTorch
(models/torch/quant.py) against this project's unquantized model at the CPU's default dtype.

Measured in one run, on the same inputs, engines alternating call by call:
- resident weight bytes (every tensor's storage) against the file, target <= 1.15x;
- one 32-token query, target 8-bit >= 1.6x and 4-bit >= 2x faster than the default dtype;
- document throughput on SciFact abstracts, target >= 0.9x the default dtype;
- fidelity against the fp32 model (worst / mean per-token cosine; random weights are a pessimistic
  proxy for quantization error: trained weights have far more structure per group);
- the linear layers alone at M rows, each way they can run (the measured argument for each choice);
- one query end to end with the 8-bit build: tokenize, encode, exact search over 5k documents of
  SciFact length (precomputed random vectors: exact search costs the same on any vectors), p50
  target <= 50 ms, with where the time goes.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lfm_colbert import ColBERT
from lfm_colbert.convert import convert
from lfm_colbert.models.torch.cpu import capabilities_line
from lfm_colbert.models.torch.lfm2 import Linear
from lfm_colbert.models.torch.quant import Int4Linear, QuantizedLinear

QUERY = "how do penguins keep warm in antarctic winters"
TARGETS = {"8bit": {"query": 1.6, "docs": 0.9}, "4bit": {"query": 2.0, "docs": 0.9}}


def build(src: Path, precision: str) -> Path:
    out = src.parent / f"{src.name.replace('-bf16', '')}-{precision}"
    if not (out / "model.safetensors").is_file():
        print(f"converting {src.name} to {precision} ...", flush=True)
        convert(src, out, precision, verify=False)
    return out


def linear_layers(model: ColBERT) -> list[torch.nn.Module]:
    return [m for m in model.backend.model.modules() if isinstance(m, (Linear, QuantizedLinear))]


def linears_pass(model: ColBERT, rows: int):
    """Every linear layer of `model` in forward order on (rows, in) inputs: weights stream from
    memory as in a forward (287M of them do not fit in any cache)."""
    lins = linear_layers(model)
    xs = {k: torch.randn(rows, k, dtype=model.backend.dtype) for k in {m.in_features for m in lins}}

    @torch.inference_mode()
    def run():
        for m in lins:
            m(xs[m.in_features])

    return run


def best_time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def alternating_median(fns: dict, calls: int) -> dict[str, float]:
    """Median seconds per call, engines interleaved call by call (load spikes hit all alike)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(calls):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def fidelity(model: ColBERT, ref: ColBERT, work) -> tuple[float, float]:
    cos = []
    for ids, mask, keep in work:
        a, b = model.backend.forward(ids, mask), ref.backend.forward(ids, mask)
        cos.append(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))[keep])
    c = np.concatenate(cos)
    return float(c.min()), float(c.mean())


def kernel_table(models: dict[str, ColBERT], rows_list: list[int], repeats: int) -> dict:
    """Seconds for one pass over all linear layers, per engine and per row count; the 4-bit build
    also forced each way (kernel / dequantize + dense GEMM) to show where they cross."""
    out: dict = {}
    q4 = models.get("4bit")
    saved = Int4Linear.cpu_kernel_max_rows
    for rows in rows_list:
        line = {name: best_time(linears_pass(m, rows), repeats) for name, m in models.items() if "dequantized" not in name}
        if q4 is not None and any(getattr(m, "layout", "") == "cpu-kernel" for m in linear_layers(q4)):
            for label, limit in (("4bit kernel", 1 << 30), ("4bit dequant+GEMM", 0)):
                Int4Linear.cpu_kernel_max_rows = limit
                try:
                    line[label] = best_time(linears_pass(q4, rows), repeats)
                finally:
                    Int4Linear.cpu_kernel_max_rows = saved
        out[rows] = line
    return out


def end_to_end(model: ColBERT, texts: list[str], n_docs: int, calls: int) -> dict:
    """p50 of tokenize + encode + exact search for one query, over n_docs documents whose token
    counts are SciFact's (vectors random: exact search costs the same on any vectors)."""
    from lfm_colbert.index import Index

    tok = model.tokenizer
    counts = []
    for s in range(0, len(texts), 256):
        ids, mask, _ = tok.tokenize_with_info(texts[s : s + 256], False)
        counts += tok.output_mask(ids, mask, False).sum(1).tolist()
    rng = np.random.default_rng(0)
    lengths = [counts[i % len(counts)] for i in range(n_docs)]
    with tempfile.TemporaryDirectory(prefix="lfm-e2e-") as tmp:
        index = Index(Path(tmp) / "idx", {"model_id": "bench", "variant": "none", "dim": 128, "fingerprint": "bench"})
        docs = []
        for n in lengths:
            v = rng.standard_normal((n, 128)).astype(np.float32)
            docs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        index.add_vectors(docs, ids=[str(i) for i in range(n_docs)])
        del docs
        parts: dict[str, list[float]] = {"tokenize": [], "encode": [], "search": [], "total": []}
        for i in range(calls + 2):
            t0 = time.perf_counter()
            ids, mask, _ = tok.tokenize_with_info([f"{QUERY} {i}"], True)
            t1 = time.perf_counter()
            q = model.backend.forward(ids, mask)[0]  # (32, 128): every query position is kept
            t2 = time.perf_counter()
            index.search_vectors(q, k=10)
            t3 = time.perf_counter()
            if i >= 2:  # warm-up
                for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    parts[k].append(v)
        index.close()
    return {"docs": n_docs, "tokens": int(sum(lengths)), **{k: statistics.median(v) for k, v in parts.items()}}


def run(checkpoint: Path, texts: list[str], batch_size: int, calls: int, repeats: int, e2e_docs: int,
        table_rows: list[int]) -> dict:
    device = "cpu"
    r: dict = {"cpu": capabilities_line(), "threads": torch.get_num_threads(), "load": [os.getloadavg()[0]]}
    paths = {"default": checkpoint, "8bit": build(checkpoint, "8bit"), "4bit": build(checkpoint, "4bit")}
    models = {name: ColBERT(p, backend="torch", device=device) for name, p in paths.items()}
    # The speed-first alternative: the 8-bit file dequantized at load (bf16 speed, 8-bit download).
    models["8bit dequantized at load"] = ColBERT(paths["8bit"], backend="torch", device=device, dequantize=True)
    r["default_dtype"] = models["default"].backend.dtype_name
    r["execution"] = {name: m.describe()["execution"] for name, m in models.items()}

    query = models["default"].tokenize([QUERY], is_query=True)
    q_args = (query["input_ids"], query["attention_mask"])
    order = np.argsort([-len(t) for t in texts])
    docs = []
    for s in range(0, len(texts), batch_size):
        tok = models["default"].tokenize([texts[i] for i in order[s : s + batch_size]])
        docs.append((tok["input_ids"], tok["attention_mask"]))
    doc_tokens = sum(int(m.size) for _, m in docs)

    lat = alternating_median({n: (lambda m=m: m.backend.forward(*q_args)) for n, m in models.items()}, calls)
    r["query_ms"] = {n: 1e3 * t for n, t in lat.items()}
    thr: dict[str, float] = {n: float("inf") for n in models}
    for _ in range(repeats):  # alternate engines each repeat
        for n, m in models.items():
            t = time.perf_counter()
            for ids, mask in docs:
                m.backend.forward(ids, mask)
            thr[n] = min(thr[n], time.perf_counter() - t)
    r["docs_tok_s"] = {n: doc_tokens / t for n, t in thr.items()}
    # The quantized builds again with the float model's rows per call (1,024 tokens), to show what
    # the bigger calls (quantized_cpu_tokens_per_call) buy.
    small: dict[str, float] = {}
    for n in ("8bit", "4bit"):
        be = models[n].backend
        saved, be.cpu_tokens_per_call = be.cpu_tokens_per_call, models["default"].backend.cpu_tokens_per_call
        t = time.perf_counter()
        for ids, mask in docs:
            be.forward(ids, mask)
        small[n] = doc_tokens / (time.perf_counter() - t)
        be.cpu_tokens_per_call = saved
    r["docs_tok_s_small_calls"] = small

    ref = ColBERT(checkpoint, backend="torch", dtype="float32", device=device)
    work = [(*q_args, np.ones_like(q_args[1], bool)), (*docs[0], docs[0][1].astype(bool))]
    r["fidelity"] = {n: fidelity(m, ref, work) for n, m in models.items()}
    del ref

    r["linears_s"] = kernel_table(models, table_rows, max(2, repeats))
    r["e2e"] = end_to_end(models["8bit"], texts, e2e_docs, calls)
    r["load"].append(os.getloadavg()[0])
    return r


def report(r: dict) -> None:
    base_q, base_d = r["query_ms"]["default"], r["docs_tok_s"]["default"]
    print(f"\nQuantized builds, natively in PyTorch: synthetic LFM2.5 (random weights), {r['threads']} threads, "
          f"load average {r['load'][0]:.1f} at start, {r['load'][1]:.1f} at end")
    print(f"CPU: {r['cpu']}")
    print(f"default dtype here: {r['default_dtype']}")
    for n, ex in r["execution"].items():
        print(f"  {n}: {ex['mode']}" + "".join(f"\n      {c} x {k}" for k, c in ex.get("layers", {}).items()))
    print("\n| build | execution | resident weights / file | query (32 tok) p50 | vs default | docs tok/s | vs default "
          "| fidelity vs fp32 (worst / mean) | targets |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, ex in r["execution"].items():
        mem = ex["resident_weight_bytes"] / ex["file_bytes"]
        q, d = r["query_ms"][n], r["docs_tok_s"][n]
        worst, mean = r["fidelity"][n]
        t = TARGETS.get(n)
        marks = "-" if t is None else ", ".join([
            f"memory <= 1.15x {'met' if mem <= 1.15 else 'NOT met'}",
            f"query >= {t['query']}x {'met' if base_q / q >= t['query'] else 'NOT met'}",
            f"docs >= {t['docs']}x {'met' if d / base_d >= t['docs'] else 'NOT met'}"])
        mode = ex["mode"] if ex["compute_dtype"] in ex["mode"] else f"{ex['mode']} ({ex['compute_dtype']})"
        print(f"| {n} | {mode} | {ex['resident_weight_bytes'] / 1e6:.0f} / "
              f"{ex['file_bytes'] / 1e6:.0f} MB = {mem:.2f}x | {q:.1f} ms | {base_q / q:.2f}x faster | {d:.0f} | "
              f"{d / base_d:.2f}x | {worst:.4f} / {mean:.4f} | {marks} |")
    print("(fidelity on random weights: a pessimistic proxy; trained weights lose far less to 4-bit groups)")
    if r.get("docs_tok_s_small_calls"):
        print("docs with 1,024 tokens per call instead: " + ", ".join(
            f"{n} {v:.0f} tok/s ({v / base_d:.2f}x)" for n, v in r["docs_tok_s_small_calls"].items()))
    print("\nAll linear layers once, at M rows (ms; weights streamed as in a forward):")
    names = list(next(iter(r["linears_s"].values())))
    print("| M | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for rows, line in r["linears_s"].items():
        print(f"| {rows} | " + " | ".join(f"{1e3 * line[n]:.1f}" for n in names) + " |")
    e = r["e2e"]
    print(f"\nOne query end to end, 8-bit build, exact search over {e['docs']:,} documents ({e['tokens']:,} tokens): "
          f"p50 {1e3 * e['total']:.1f} ms (tokenize {1e3 * e['tokenize']:.2f}, encode {1e3 * e['encode']:.1f}, "
          f"search {1e3 * e['search']:.1f}); target <= 50 ms {'met' if e['total'] <= 0.05 else 'NOT met'}")
