"""What `--dataset` names: a local BEIR folder, a NanoBEIR set or a MIRACL pool, expanded and
loaded. Sits above datasets.py (folders, the cache) and hub.py (downloads), which import neither
this module nor each other's callers, so the three form no import cycle."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from lfm_colbert.errors import DatasetError
from lfm_colbert.eval import hub
from lfm_colbert.eval.datasets import RetrievalDataset, load_beir_folder

__all__ = ["DATASET_HELP", "expand_specs", "load_dataset"]

DATASET_HELP = """\
DATASET is one of
  PATH                a local BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)
  nano:NAME           a NanoBEIR set, e.g. nano:scifact, nano:nfcorpus (50 queries, <=10k docs)
  nano:NAME:LANG      the multilingual NanoBEIR extension, e.g. nano:scifact:es
  nanobeir            all 13 NanoBEIR sets
  miracl:LANG         a MIRACL dev pool (~6k passages, 100 queries, seeded), e.g. miracl:es
  miracl              miracl:es, miracl:de, miracl:ja and miracl:ar (the MLX build's four)"""


def expand_specs(specs: list[str]) -> list[str]:
    """Split comma lists and expand the group names `nanobeir` and `miracl`."""
    out: list[str] = []
    for spec in specs:
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if part.lower() == "nanobeir" and not Path(part).exists():
                out += [f"nano:{n}" for n in hub.NANOBEIR_SETS]
            elif part.lower() == "miracl" and not Path(part).exists():
                out += [f"miracl:{lang}" for lang in hub.MIRACL_DEFAULT_LANGS]
            else:
                out.append(part)
    return out


def load_dataset(
    spec: str,
    *,
    split: str = "test",
    lang: str = "en",
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> RetrievalDataset:
    """Load what `--dataset` names (see DATASET_HELP); unknown names raise DatasetError."""
    path = Path(spec).expanduser()
    if path.exists():
        return load_beir_folder(path, split=split, lang=lang)
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "nano" and rest:
        name, _, nlang = rest.partition(":")
        return hub.load_nanobeir(name, lang=nlang or None, cache_dir=cache_dir)
    if kind == "miracl" and rest:
        return hub.load_miracl(rest, cache_dir=cache_dir, seed=seed)
    if spec.lower().startswith("nano") and not rest:  # "NanoSciFact" or "nanoscifact"
        return hub.load_nanobeir(spec[4:], cache_dir=cache_dir)
    if "/" in spec or os.sep in spec or spec.startswith("."):
        raise DatasetError(f"{spec}: no such folder")
    choices = ["nanobeir", "miracl"] + [f"nano:{n}" for n in hub.NANOBEIR_SETS] + [f"miracl:{x}" for x in hub.MIRACL_LANGS]
    close = difflib.get_close_matches(spec.lower(), choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise DatasetError(f"unknown dataset {spec!r}: not a folder and not a known name.{hint}\n{DATASET_HELP}")
