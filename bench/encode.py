"""Encoder speed: this project's PyTorch backend against transformers' Lfm2Model + Dense (PyLate's path).

Both engines get identical token ids (PyLate's tokenization and length-sorted padded batches) on a
full-size synthetic LFM2.5 checkpoint (real config and tokenizer, random weights). Repeats alternate
between the engines (single-query latency: call by call, median kept), so a busy machine slows
both alike; ratios are the numbers to read.

    python bench/encode.py                     # default: 32 x 256-token docs, 48 SciFact abstracts
    python bench/encode.py --docs 64 --scifact 128 --repeats 3 --json out.json
    python bench/encode.py --device cuda --docs 256 --scifact 512 --batch-size 64   # on a GPU
    python bench/encode.py --sections quantized  # only the 8-bit / 4-bit rows (bench/encode_quantized.py)

On an AVX-512 machine, `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` runs PyTorch's and
oneDNN's AVX2 code paths (no native bf16: the default dtype becomes fp32), as an AVX2-only CPU would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LFM_COLBERT_SHARED", REPO.parent / "shared")) / "data"
sys.path.insert(0, str(REPO / "tests" / "parity"))  # the test reference doubles as the baseline

from hf_reference import HFReference  # noqa: E402

from lfm_colbert import ColBERT  # noqa: E402
from lfm_colbert.models.torch.cpu import capabilities_line  # noqa: E402
from lfm_colbert.models.torch.lfm2 import Linear  # noqa: E402
from lfm_colbert.synthetic import write_checkpoint  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_in_use(device: str) -> int:
    """Bytes held: the process's resident memory on the CPU, the caching allocator's on CUDA."""
    return torch.cuda.memory_allocated() if device.startswith("cuda") else rss_bytes()


class PeakRSS:
    """`peak`: the most memory held inside the `with` block. On the CPU, resident memory sampled in
    a thread; on CUDA, the caching allocator's own high-water mark."""

    def __init__(self, device: str = "cpu"):
        self.cuda = device.startswith("cuda")

    def __enter__(self):
        if self.cuda:  # the allocator keeps its own high-water mark
            torch.cuda.reset_peak_memory_stats()
            self.peak = torch.cuda.memory_allocated()
            return self
        self.peak, self._stop = rss_bytes(), False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
            return
        self._stop = True
        self._t.join()


def gemm_rate(dtype: torch.dtype, device: str = "cpu", m: int = 2048, k: int = 1024, n: int = 4608) -> float:
    """Best-of FLOP/s of one (m, k) @ (k, n) matmul, the shape of the model's FFN."""
    a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(5):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best


def flops_per_token(model: ColBERT, seq_len: int) -> float:
    """Matmul FLOPs per token: 2 x linear weights (embedding excluded) + attention scores/values."""
    a = model.checkpoint.args
    # Every Linear, the Dense head included (read from the module: a packed weight is no Parameter).
    linear = sum(m.in_features * m.out_features for m in model.backend.model.modules() if isinstance(m, Linear))
    n_attn = sum(t == "full_attention" for t in a.layer_types)
    return 2 * linear + n_attn * 4 * seq_len * a.hidden_size


def scifact_texts(n: int) -> list[str]:
    corpus = SHARED / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        rng = np.random.default_rng(0)  # no ../shared: synthetic mixed lengths
        return [" ".join(["word"] * int(rng.integers(40, 400))) for _ in range(n)]
    texts = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            texts.append((doc.get("title", "") + " " + doc["text"]).strip())
            if len(texts) == n:
                break
    return texts


def batches(model: ColBERT, texts: list[str], batch_size: int, is_query: bool = False):
    """PyLate's batching: sort by length, pad each batch to its longest."""
    order = np.argsort([-len(t) for t in texts])
    out = []
    for s in range(0, len(texts), batch_size):
        tok = model.tokenize([texts[i] for i in order[s : s + batch_size]], is_query=is_query)
        out.append((tok["input_ids"], tok["attention_mask"]))
    return out


def fixed_length_docs(model: ColBERT, n: int, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    text = " ".join(scifact_texts(64))
    ids = model.tokenize([text])["input_ids"][0]
    assert len(ids) >= length, "not enough text for the fixed-length documents"
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(n):  # windows of real text after BOS + [D]
        start = int(rng.integers(2, len(ids) - length + 2))
        rows.append(np.concatenate([ids[:2], ids[start : start + length - 2]]))
    return [(np.stack(rows), np.ones((n, length), dtype=np.int64))]


def timed(engines: dict, work, repeats: int, gemm: dict) -> dict[str, dict]:
    """Run `work` with each engine, alternating engines each repeat; best time and peak RSS.

    The GEMM rate is re-measured every repeat (`gemm` keeps the best), so the roofline comes from
    the same stretch of time, and the same load, as the engines it is compared with.
    """
    stats = {name: {"seconds": float("inf"), "peak_rss": 0} for name in engines}
    for name, fn in engines.items():  # warm-up: kernels, allocator
        fn(*work[0])
    for _ in range(repeats):
        gemm["flops"] = max(gemm["flops"], gemm_rate(gemm["dtype"], gemm["device"]))
        for name, fn in engines.items():
            base = memory_in_use(gemm["device"])
            with PeakRSS(gemm["device"]) as mem:
                t = time.perf_counter()
                for ids, mask in work:
                    fn(ids, mask)
                elapsed = time.perf_counter() - t
            stats[name]["seconds"] = min(stats[name]["seconds"], elapsed)
            stats[name]["peak_rss"] = max(stats[name]["peak_rss"], mem.peak - base)
    return stats


def latency(engines: dict, work, repeats: int, gemm: dict) -> dict[str, dict]:
    """Single-call latency: the engines alternate call by call, so load spikes on this shared
    machine hit both alike; the median over all calls is kept (as `seconds` for the whole `work`)."""
    calls: dict[str, list[float]] = {name: [] for name in engines}
    for name, fn in engines.items():  # warm-up
        fn(*work[0])
    for _ in range(repeats):
        gemm["flops"] = max(gemm["flops"], gemm_rate(gemm["dtype"], gemm["device"]))
        for ids, mask in work:
            for name, fn in engines.items():
                t = time.perf_counter()
                fn(ids, mask)
                calls[name].append(time.perf_counter() - t)
    return {name: {"seconds": float(np.median(c)) * len(work), "peak_rss": 0} for name, c in calls.items()}


def linears_only(model: ColBERT, seq_len: int):
    """A pass over every Linear of our model, in forward order, on (1, seq_len, in) inputs and
    nothing else: the floor for one forward, since each weight still streams in from memory."""
    lins = [m for m in model.backend.model.modules() if isinstance(m, Linear)]
    dev, dt = model.backend.device, model.backend.dtype
    xs = [torch.randn(1, seq_len, m.in_features, device=dev, dtype=dt) for m in lins]

    @torch.inference_mode()
    def run(ids, mask):
        for m, x in zip(lins, xs):
            out = m(x)
        return out.float().cpu().numpy()  # waits for the device, as the engines' outputs do

    return run


def where_time_goes(fn, ids, mask) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(ids, mask)
    groups: dict[str, float] = {}
    for ev in prof.key_averages():
        name = ev.key
        group = ("matmul (linear layers)" if name in ("aten::mm", "aten::addmm", "aten::bmm", "mkldnn::_linear_pointwise") else
                 "attention (sdpa)" if "scaled_dot_product" in name else
                 "short conv" if "conv" in name else
                 "norms and elementwise" if name in ("aten::mul", "aten::add", "aten::silu", "aten::pow", "aten::mean",
                                                     "aten::rsqrt", "aten::sum", "aten::div", "aten::cat", "aten::neg",
                                                     "aten::copy_", "aten::to", "aten::_to_copy", "aten::fill_",
                                                     "aten::linalg_vector_norm", "aten::clamp_min", "aten::div_") else
                 None)
        if group:
            groups[group] = groups.get(group, 0.0) + ev.self_cpu_time_total / 1e6
    total = sum(groups.values())
    return sorted(((g, t / total) for g, t in groups.items()), key=lambda x: -x[1])


def cosines(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-token cosine over the real (unmasked) tokens."""
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return cos[mask.astype(bool)]


def min_cosine(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(cosines(a, b, mask).min())


def mean_cosine(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(cosines(a, b, mask).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=REPO / ".bench" / "full-lfm2.5-bf16")
    ap.add_argument("--docs", type=int, default=32, help="number of 256-token documents")
    ap.add_argument("--scifact", type=int, default=48, help="number of SciFact abstracts (mixed lengths)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--queries", type=int, default=20, help="single-query latency repeats")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--device", default="cpu", help="torch device for both engines, e.g. cuda")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--sections", default="engines,quantized",
                    help="engines (ours vs transformers), quantized (8-bit / 4-bit natively; CPU only)")
    ap.add_argument("--e2e-docs", type=int, default=5000, help="documents in the end-to-end query's index")
    ap.add_argument("--table-rows", default="1,8,32,128,1024", help="M values for the linear-layers table")
    args = ap.parse_args()
    sections = set(args.sections.split(","))

    torch.set_num_threads(os.cpu_count() or 1)
    if not (args.checkpoint / "model.safetensors").is_file():
        tok = SHARED / "lfm2-tokenizer" / "tokenizer.json"
        print(f"writing a full-size synthetic checkpoint to {args.checkpoint} ...", flush=True)
        write_checkpoint(args.checkpoint, size="full", dtype="bfloat16", tokenizer_file=tok if tok.is_file() else None)

    device = args.device
    print(f"CPU: {capabilities_line()}", flush=True)
    results: dict = {"cpu": capabilities_line()}
    if "quantized" in sections and device == "cpu":
        import encode_quantized

        results["quantized"] = encode_quantized.run(
            args.checkpoint, scifact_texts(args.scifact), args.batch_size, args.queries, args.repeats,
            args.e2e_docs, [int(x) for x in args.table_rows.split(",")])
        encode_quantized.report(results["quantized"])
    if "engines" not in sections:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        return
    results |= {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "CPU",
                     "threads": torch.get_num_threads(), "gemm_flops": {}, "runs": [], "load": [os.getloadavg()[0]]}
    # Two bf16 engines cannot agree better than bf16 allows; the fp32 reference shows whether each is
    # as close to the exact result as the other (checked on a few rows of each workload).
    fp32_ref = HFReference(args.checkpoint, dtype=torch.float32, attn="sdpa", device=device) if args.dtypes != "float32" else None
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        # Resident memory after a first forward: safetensors maps files lazily, so count touched pages.
        base = memory_in_use(device)
        ours = ColBERT(args.checkpoint, backend="torch", dtype=dtype_name, device=device)
        query = batches(ours, ["how do penguins keep warm in antarctic winters"], 1, is_query=True)
        ours.backend.forward(*query[0])
        ours_mem = memory_in_use(device) - base
        base = memory_in_use(device)
        ref = HFReference(args.checkpoint, dtype=dtype, attn="sdpa", device=device)
        ref(*query[0])
        ref_mem = memory_in_use(device) - base
        engines = {"lfm-colbert": ours.backend.forward, "transformers": lambda i, m: ref(i, m).numpy()}
        gemm = {"dtype": dtype, "device": device, "flops": gemm_rate(dtype, device)}

        docs256 = fixed_length_docs(ours, args.docs, 256)
        mixed = batches(ours, scifact_texts(args.scifact), args.batch_size)
        for label, work, reps in [("256-token docs", docs256, args.repeats),
                                  ("SciFact abstracts", mixed, args.repeats),
                                  ("single query (32 tok)", query * args.queries, args.repeats)]:
            single = label.startswith("single")
            if single:  # the linear layers alone, timed alongside: how low our latency could go
                probe = {**engines, "linears only": linears_only(ours, work[0][0].shape[1])}
                stats = latency(probe, work, reps, gemm)
            else:
                stats = timed(engines, work, reps, gemm)
            real_tokens = int(sum(m.sum() for _, m in work))
            padded_tokens = int(sum(m.size for _, m in work))
            seq = int(np.mean([i.shape[1] for i, _ in work]))
            roofline = gemm["flops"] / flops_per_token(ours, seq)  # tokens/s at the machine's GEMM rate
            a = ours.backend.forward(*work[0])
            b = ref(*work[0]).numpy()
            row = {"dtype": dtype_name, "workload": label, "real_tokens": real_tokens,
                   "padded_tokens": padded_tokens, "roofline_tok_s": roofline,
                   "min_cosine_ours_vs_transformers": min_cosine(a, b, work[0][1]),
                   "mean_cosine_ours_vs_transformers": mean_cosine(a, b, work[0][1]),
                   "weights_rss": {"lfm-colbert": ours_mem, "transformers": ref_mem}}
            if dtype != torch.float32 and fp32_ref is not None:
                ids, mask = work[0][0][:4], work[0][1][:4]
                exact = fp32_ref(ids, mask).numpy()
                row["min_cosine_vs_fp32"] = {"lfm-colbert": min_cosine(a[:4], exact, mask),
                                             "transformers": min_cosine(b[:4], exact, mask)}
            for name, st in stats.items():
                row[name] = {"seconds": st["seconds"], "tok_s": padded_tokens / st["seconds"],
                             "latency_ms": 1000 * st["seconds"] / len(work), "peak_activation_rss": st["peak_rss"]}
            results["runs"].append(row)
            print(f"[{dtype_name}] {label}: ours {row['lfm-colbert']['tok_s']:.0f} tok/s, "
                  f"transformers {row['transformers']['tok_s']:.0f} tok/s", flush=True)
        results["gemm_flops"][dtype_name] = gemm["flops"]
        if dtype_name == "bfloat16" and device == "cpu":  # the profile groups are CPU op names
            results["profile_bf16_256"] = where_time_goes(ours.backend.forward, *docs256[0])
            results["profile_bf16_query"] = where_time_goes(ours.backend.forward, *query[0])
        del ours, ref

    results["load"].append(os.getloadavg()[0])
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_report(r: dict) -> None:
    print(f"\nEncoder benchmark: full-size synthetic LFM2.5 (random weights), {r['device']}, {r['threads']} CPU threads, "
          f"load average {r['load'][0]:.1f} at start, {r['load'][1]:.1f} at end")
    print(f"CPU: {r['cpu']}")
    for dt, f in r["gemm_flops"].items():
        print(f"  GEMM rate {dt}: {f / 1e9:.0f} GFLOP/s (2048x1024 @ 1024x4608)")
    print("\n| dtype | workload | lfm-colbert | transformers | ratio | % of GEMM roofline (ours / ref) "
          "| cos ours vs ref (min / mean) | min cos vs fp32 (ours / ref) | memory growth MiB, after warm-up (ours / ref) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in r["runs"]:
        o, t = row["lfm-colbert"], row["transformers"]
        if row["workload"].startswith("single"):
            speed = f"{o['latency_ms']:.1f} ms | {t['latency_ms']:.1f} ms | {t['latency_ms'] / o['latency_ms']:.2f}x lower"
        else:
            speed = f"{o['tok_s']:.0f} tok/s | {t['tok_s']:.0f} tok/s | {o['tok_s'] / t['tok_s']:.2f}x"
        roof = f"{100 * o['tok_s'] / row['roofline_tok_s']:.0f}% / {100 * t['tok_s'] / row['roofline_tok_s']:.0f}%"
        mem = f"{o['peak_activation_rss'] / 2**20:.0f} / {t['peak_activation_rss'] / 2**20:.0f}"
        cos = f"{row['min_cosine_ours_vs_transformers']:.5f} / {row['mean_cosine_ours_vs_transformers']:.6f}"
        exact = row.get("min_cosine_vs_fp32")
        exact = f"{exact['lfm-colbert']:.5f} / {exact['transformers']:.5f}" if exact else "-"
        print(f"| {row['dtype']} | {row['workload']} | {speed} | {roof} | {cos} | {exact} | {mem} |")
    w = r["runs"][0]["weights_rss"]
    print(f"\nweights resident (first dtype; GPU memory on CUDA): ours {w['lfm-colbert'] / 2**20:.0f} MiB, transformers {w['transformers'] / 2**20:.0f} MiB")
    for key, label in [("profile_bf16_256", "bf16, 256-token docs"), ("profile_bf16_query", "bf16, one query")]:
        if key in r:
            print(f"where the time goes ({label}): " + ", ".join(f"{g} {100 * s:.0f}%" for g, s in r[key]))
    for row in r["runs"]:
        if "linears only" in row:
            floor, ref = row["linears only"]["latency_ms"], row["transformers"]["latency_ms"]
            print(f"[{row['dtype']}] one query, our linear layers alone: {floor:.1f} ms; transformers / 1.5 = "
                  f"{ref / 1.5:.1f} ms, which leaves {ref / 1.5 - floor:.1f} ms for everything else")


if __name__ == "__main__":
    main()
