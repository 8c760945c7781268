"""Turn a results dict (see runner.py) into a markdown table, results.json and a retention plot."""

from __future__ import annotations

import json
from pathlib import Path

from lfm_colbert.eval.crosslingual import matrix_markdown


def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _size(n: int | None) -> str:
    if not n:
        return "—"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"  # decimal units, as convert and model cards use


def markdown_table(results: dict) -> str:
    """The headline table: per dataset NDCG@k / Recall@k, their means, retention and size per run;
    then per-dataset retention and any cross-lingual matrices."""
    k = results["settings"]["k"]
    nd, rc = f"ndcg@{k}", f"recall@{k}"
    runs = results["runs"]
    out: list[str] = []
    if runs:
        names = list(results["datasets"])
        out.append(f"NDCG@{k} / Recall@{k} per dataset; retention = metric / baseline metric (bf16 when evaluated).")
        out.append("")
        head = ["model", "precision", "size"] + names + [f"mean NDCG@{k}", f"mean R@{k}", f"ret. NDCG@{k}", f"ret. R@{k}"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|---" * len(head) + "|")
        for r in runs:
            ret = (r.get("retention") or {}).get("mean") or {}
            cells = [r["model"] if r["model"] == "bm25" else r["label"].removesuffix(f" {r['precision']}"),
                     r["precision"] or ("—" if r["model"] == "bm25" else "native"), _size(r["size_bytes"])]
            cells += [f"{_fmt(r['metrics'][n][nd])} / {_fmt(r['metrics'][n][rc])}" for n in names]
            cells += [_fmt(r["mean"][nd]), _fmt(r["mean"][rc]), _fmt(ret.get(nd)), _fmt(ret.get(rc))]
            out.append("| " + " | ".join(cells) + " |")
        with_ret = [r for r in runs if r.get("retention")]
        if with_ret and len(names) > 1:
            out += ["", f"Retention per dataset (NDCG@{k} / R@{k}):", ""]
            out.append("| run | " + " | ".join(names) + " |")
            out.append("|---" * (len(names) + 1) + "|")
            for r in with_ret:
                ret = r["retention"]
                out.append(f"| {r['label']} | " + " | ".join(f"{_fmt(ret[n][nd])} / {_fmt(ret[n][rc])}" for n in names) + " |")
        rows = [f"{n}: {d['n_queries']} queries, {d['n_docs']} docs ({d['lang']})" for n, d in results["datasets"].items()]
        out += ["", "Datasets: " + "; ".join(rows) + "."]
    xl = results.get("crosslingual")
    if xl:
        for sys in xl["systems"]:
            for metric in (nd, "accuracy@1"):
                cells = {tuple(key.split("->")): m[metric] for key, m in sys["cells"].items()}
                out += ["", matrix_markdown(cells, xl["langs"], f"{xl['set']} {metric}, {sys['label']}")]
    if results["settings"].get("note"):
        out += ["", f"Note: {results['settings']['note']}"]
    return "\n".join(out).strip() + "\n"


def plot_retention(results: dict, path: str | Path) -> Path | None:
    """Grouped bars per dataset (and the mean): retention of NDCG@k and Recall@k per run.
    Without a precision comparison it plots the metrics themselves. None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    k = results["settings"]["k"]
    runs = results["runs"]
    if not runs:
        return None
    names = list(results["datasets"]) + ["mean"]
    with_ret = [r for r in runs if r.get("retention")]
    show = with_ret or runs
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(names) * 2), 4.5), squeeze=False)
    width = 0.8 / len(show)
    for ax, metric in zip(axes[0], (f"ndcg@{k}", f"recall@{k}")):
        for j, r in enumerate(show):
            if with_ret:
                vals = [r["retention"][n][metric] or 0.0 for n in names]
            else:
                vals = [r["metrics"][n][metric] for n in names[:-1]] + [r["mean"][metric]]
            xs = [i + (j - (len(show) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, vals, width=width, label=r["label"])
        if with_ret:
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{'retention of ' if with_ret else ''}{metric.replace('ndcg', 'NDCG').replace('recall', 'Recall')}")
        ax.set_ylabel("metric / baseline" if with_ret else metric)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))  # room for the legend above the plots
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """results.json, table.md and retention.png under `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.json", "table": out / "table.md"}
    paths["results"].write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["table"].write_text(markdown_table(results), encoding="utf-8")
    png = plot_retention(results, out / "retention.png")
    if png:
        paths["plot"] = png
    return paths
