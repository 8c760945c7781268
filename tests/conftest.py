"""Shared fixtures: synthetic checkpoints in the real layout, and the real data in ../shared."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (as CI lays it out); LFM_COLBERT_SHARED overrides.
SHARED_DATA = Path(os.environ.get("LFM_COLBERT_SHARED", REPO.parent / "shared")) / "data"
REAL_TOKENIZER = SHARED_DATA / "lfm2-tokenizer" / "tokenizer.json"
REFERENCE_DIR = SHARED_DATA / "lfm2-colbert-reference"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared/data is not beside this checkout)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def real_tokenizer_file() -> Path | None:
    """The real LFM2 tokenizer when ../shared is present; None makes a tiny trained one instead."""
    return REAL_TOKENIZER if REAL_TOKENIZER.is_file() else None


def _write(tmp_path_factory, name: str, tokenizer_file, **kwargs) -> Path:
    from lfm_colbert.synthetic import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp(name), tokenizer_file=tokenizer_file, **kwargs)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, real_tokenizer_file) -> Path:
    """A tiny LFM2.5 (bidirectional) checkpoint: real layout and tokenizer, random weights."""
    return _write(tmp_path_factory, "tiny-lfm2.5", real_tokenizer_file, size="tiny", variant="lfm2.5")


@pytest.fixture(scope="session")
def tiny_causal_checkpoint(tmp_path_factory, real_tokenizer_file) -> Path:
    """A tiny LFM2 (causal) checkpoint."""
    return _write(tmp_path_factory, "tiny-lfm2", real_tokenizer_file, size="tiny", variant="lfm2", seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from lfm_colbert import ColBERT

    return ColBERT(tiny_checkpoint, backend="torch", dtype="float32", device="cpu")


def _write_pdf(path: Path, pages: list[str]) -> None:
    """A minimal valid PDF with one line of Helvetica text per page ("" for a blank page); the
    xref offsets are computed, so PDF readers parse it without repairs."""
    objects: list = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1") if text else b""
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode("latin-1") + stream + b"\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        body = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


@pytest.fixture
def make_pdf():
    """make_pdf(path, ["page 1 text", "", ...]): write a small text PDF for ingestion tests."""
    return _write_pdf


def _drop_lexical(path: Path) -> None:
    from lfm_colbert.index import lexical

    conn = sqlite3.connect(Path(path) / "catalog.sqlite")
    for t in lexical.TABLES:
        conn.execute(f"DROP TABLE {t}")
    conn.execute("DELETE FROM meta WHERE key IN ('lexical', 'lexical_generation')")
    conn.commit()
    conn.close()


@pytest.fixture
def drop_lexical():
    """drop_lexical(index_dir): make a closed index look as one written before the keyword index
    existed (no lexical tables, no lexical meta keys)."""
    return _drop_lexical
