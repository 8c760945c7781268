"""`lfm-colbert info DIR`: what an index holds and how it was built."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = """\
Show an index's model, storage, counts and sizes. --verify also checks every file against the
sha256 recorded when it was written and SQLite's integrity, and names any corrupted file.

examples:
  lfm-colbert info my-index
  lfm-colbert info my-index --verify
  lfm-colbert info my-index --json | jq .documents
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("info", help="describe an index", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("index", metavar="DIR", help="index directory")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.add_argument("--verify", action="store_true", help="check every file's checksum")
    p.set_defaults(func=run)


def _storage(info: dict) -> str:
    """How a compressed index stores its vectors, in words."""
    kind = f"PLAID {info['storage']['nbits']}-bit residuals"
    if info["n_centroids"]:
        trained = info["codec_trained_on_tokens"]  # not recorded by format 1
        kind += f", {info['n_centroids']:,} centroids" + (f" fitted to {trained:,} tokens" if trained else "")
    else:
        kind += f" once it holds {info['train_tokens']:,} tokens (float16 vectors, searched exactly, until then)"
    return kind + (", final candidates rescored on float16 vectors" if info["storage"].get("rescore") else "")


def run(args: argparse.Namespace) -> int:
    from lfm_colbert.index import Index
    from lfm_colbert.index.index import REFIT_GROWTH
    from lfm_colbert.stores import describe_store, is_store_spec

    if is_store_spec(args.index):  # a Qdrant collection describes itself
        return describe_store(args.index, args.json, args.verify)

    index = Index(args.index, create=False, verify=False)
    if args.verify:
        index.verify_files()
    info = index.info()
    if args.verify:
        info["verified"] = True
    info["pool_factor"] = index.manifest.get("pool_factor")
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    model = info["model"]
    st = info["storage"]
    print(f"index      {info['path']} (format {info['format_version']}, created {info['created']})")
    if model.get("model_id"):
        print(f"model      {model['model_id']} ({model.get('variant')}, dim {model.get('dim')}, "
              f"fingerprint {model.get('fingerprint')})")
    else:  # filled with add_vectors and a bare description: nothing to encode queries with
        print(f"model      none recorded (vectors added directly, dim {model.get('dim')}); search with --model "
              "or $LFM_COLBERT_MODEL")
    ex = model.get("execution")  # how the model that encoded the documents ran (indexes built before: absent)
    if ex:
        print(f"encoded    {ex.get('mode')} ({ex.get('compute_dtype')}, {ex.get('device')}); weights "
              f"{ex.get('resident_weight_bytes', 0) / 1e6:.0f} MB in memory, {ex.get('file_bytes', 0) / 1e6:.0f} MB on disk")
    print(f"storage    {_storage(info) if st.get('nbits') else 'exact, float16 vectors'}"
          + (f"; tokens pooled by {info['pool_factor']}" if info.get("pool_factor") else ""))
    print(f"documents  {info['documents']:,} ({info['tokens']:,} tokens) in {info['segments']} segment(s)")
    if (info["codec_growth"] or 0) >= REFIT_GROWTH:
        print(f"codec      fitted to {info['codec_growth']:.1f}x fewer tokens than the index now holds, which costs "
              "recall: index the collection again into a new index")
    print(f"deleted    {info['deleted_fraction']:.1%} of stored tokens (compacted above 25%)")
    if info["tokens"]:
        print(f"size       {info['bytes_on_disk']:,} bytes; per token: {info['bytes_per_token_vectors']} "
              f"(vectors), {info['bytes_per_token_total']} (everything)")
    else:
        print(f"size       {info['bytes_on_disk']:,} bytes (no documents yet)")
    print(f"kernel     {info['search_kernel']}")
    lex = info.get("lexical")
    print("keywords   " + ("none yet (lfm-colbert index --index DIR --rebuild-lexical builds it)" if lex is None else
                           f"BM25 k1={lex['k1']} b={lex['b']}, {lex['terms']:,} terms"
                           + ("" if lex["up_to_date"] else " (behind: the next write rebuilds it)")))
    if args.verify:
        print("verified   every checksum matches")
    index.close()
    return 0
