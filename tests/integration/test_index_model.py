"""Index and rerank with a real (tiny, synthetic) encoder: texts in, ids and scores out."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_colbert.errors import IndexFormatError, InputError
from lfm_colbert.index import Index, rerank
from lfm_colbert.scoring import maxsim

TEXTS = [
    "Emperor penguins keep their eggs warm on their feet.",
    "Espresso is made by forcing hot water through ground coffee.",
    "El volcán entró en erupción y la lava llegó al mar.",
    "富士山は活火山です。",
]


@pytest.fixture
def built(tmp_path, tiny_model):
    index = Index(tmp_path / "idx", tiny_model)
    index.add(TEXTS, ids=["pen", "cof", "vol", "fuji"], metadata=[{"lang": l} for l in ("en", "en", "es", "ja")])
    return index


def test_search_scores_are_maxsim_of_the_encoder(built, tiny_model):
    hits = built.search("penguin eggs", k=4)
    q = tiny_model.encode(["penguin eggs"], is_query=True)[0]
    docs = [d.astype(np.float16).astype(np.float32) for d in tiny_model.encode(TEXTS)]
    want = dict(zip(["pen", "cof", "vol", "fuji"], maxsim(q, docs)))
    assert [h.id for h in hits] == sorted(want, key=want.get, reverse=True)
    for h in hits:
        assert h.score == pytest.approx(want[h.id], rel=1e-4)
        assert h.text == TEXTS[["pen", "cof", "vol", "fuji"].index(h.id)]
    assert [h.id for h in built.search("penguin eggs", k=4, filter={"lang": "en"})] == [
        i for i in [h.id for h in hits] if i in ("pen", "cof")
    ]
    batch = built.search(["penguin eggs", "coffee"], k=2)
    assert batch[0] == hits[:2] and len(batch[1]) == 2


def test_reopen_without_a_model_loads_the_recorded_one(built, tmp_path):
    before = built.search("volcano", k=3)
    built.close()
    again = Index(tmp_path / "idx")  # model_id and dtype in the manifest: the tiny checkpoint, fp32
    hits = again.search("volcano", k=3)
    assert [(h.id, h.text, h.metadata) for h in hits] == [(h.id, h.text, h.metadata) for h in before]
    # The device is this machine's default (CUDA where there is one), so allow fp32 rounding.
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in before], rtol=1e-5)


def test_reopen_on_a_chosen_device(built, tmp_path, tiny_model):
    built.close()
    again = Index(tmp_path / "idx", device="cpu", backend="torch")
    assert again.model.backend.device.type == "cpu" and again.model.backend.dtype_name == "float32"  # as recorded
    with pytest.raises(InputError, match="loaded already"):
        Index(tmp_path / "idx", tiny_model, device="cpu")
    with pytest.raises(InputError, match="unknown device"):
        Index(tmp_path / "idx", device="gpu0").search("volcano")


def test_another_model_is_refused(built, tmp_path, tiny_causal_checkpoint):
    from lfm_colbert import ColBERT

    other = ColBERT(tiny_causal_checkpoint, backend="torch", dtype="float32", device="cpu")
    with pytest.raises(IndexFormatError, match="built with model"):
        Index(tmp_path / "idx", other)


def test_rerank_needs_no_index(tiny_model):
    ranked = rerank("penguin eggs", TEXTS, model=tiny_model)
    q = tiny_model.encode(["penguin eggs"], is_query=True)[0]
    scores = maxsim(q, tiny_model.encode(TEXTS))
    assert [r.index for r in ranked] == list(np.argsort(-scores, kind="stable"))
    assert [r.text for r in ranked] == [TEXTS[r.index] for r in ranked]
    assert len(rerank("x", TEXTS, model=tiny_model, k=2)) == 2
    with pytest.raises(InputError):
        rerank("", TEXTS, model=tiny_model)
    with pytest.raises(InputError):
        rerank("x", TEXTS, model=tiny_model, k=0)
    assert rerank("x", [], model=tiny_model) == []
