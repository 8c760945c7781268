"""NanoBEIR and MIRACL loaders, tested up to the network boundary with a fake `datasets` module."""

from __future__ import annotations

import sys
import types

import pytest

from lfm_colbert.errors import DatasetError
from lfm_colbert.eval import hub
from lfm_colbert.eval.sources import load_dataset


class FakeDataset(list):
    """A list of row dicts with `column_names`, like a `datasets.Dataset`."""

    @property
    def column_names(self):
        return list(self[0]) if self else []


class FakeHub:
    """Stands in for `datasets.load_dataset`: returns tables per (repo, config), records calls."""

    def __init__(self, tables: dict):
        self.tables, self.calls = tables, []

    def __call__(self, repo, config=None, split=None):
        self.calls.append((repo, config, split))
        if (repo, config) not in self.tables:
            raise FileNotFoundError(f"Couldn't reach {repo} on the Hub (offline)")
        data = self.tables[(repo, config)]
        return data[split] if split else data


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    def install(tables):
        fake = FakeHub(tables)
        monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake))
        return fake

    monkeypatch.setenv("LFM_COLBERT_CACHE", str(tmp_path / "cache"))
    return install


def _nano_tables(name="NanoSciFact", n_docs=20, n_queries=5):
    repo = f"zeta-alpha-ai/{name}"
    corpus = FakeDataset({"_id": f"d{i}", "text": f"document {i}"} for i in range(n_docs))
    queries = FakeDataset({"_id": f"q{i}", "text": f"query {i}"} for i in range(n_queries))
    qrels = FakeDataset({"query-id": f"q{i}", "corpus-id": f"d{2 * i}"} for i in range(n_queries))
    return {(repo, "corpus"): {"train": corpus}, (repo, "queries"): {"train": queries}, (repo, "qrels"): {"train": qrels}}


def test_nanobeir_english(fake_hub):
    fake = fake_hub(_nano_tables())
    ds = load_dataset("nano:scifact")
    assert ds.name == "NanoSciFact" and len(ds.corpus) == 20 and len(ds.queries) == 5
    assert ds.qrels["q3"] == {"d6": 1}  # NanoBEIR qrels carry no score column: relevant
    assert {c[0] for c in fake.calls} == {"zeta-alpha-ai/NanoSciFact"}
    n = len(fake.calls)
    again = load_dataset("NanoSciFact")  # second load: from the cache, no hub call
    assert len(fake.calls) == n and again.corpus == ds.corpus and again.qrels == ds.qrels


def test_nanobeir_multilingual_takes_english_qrels(fake_hub):
    tables = _nano_tables()
    tables[(hub.NANOBEIR_MULTILINGUAL_REPO, "NanoSciFact_es")] = {
        "corpus": FakeDataset({"_id": f"d{i}", "text": f"documento {i}"} for i in range(20)),
        "queries": FakeDataset({"_id": f"q{i}", "text": f"consulta {i}"} for i in range(5)),
    }
    fake_hub(tables)
    ds = load_dataset("nano:scifact:es")
    assert ds.name == "NanoSciFact-es" and ds.lang == "es"
    assert ds.queries["q1"] == "consulta 1" and ds.qrels["q1"] == {"d2": 1}


def _miracl_tables(lang="es", n_docs=500, n_queries=30):
    r = hub.MIRACL_REPO
    corpus = FakeDataset({"_id": f"{i}#0", "title": f"T{i}", "text": f"pasaje {i}"} for i in range(n_docs))
    queries = FakeDataset({"_id": str(q), "text": f"pregunta {q}"} for q in range(n_queries))
    qrels = []
    for q in range(n_queries):
        if q % 5 == 4:
            qrels.append({"query-id": str(q), "corpus-id": f"{q}#0", "score": 0})  # no positive: never sampled
            continue
        qrels += [{"query-id": str(q), "corpus-id": f"{q}#0", "score": 1},
                  {"query-id": str(q), "corpus-id": f"{q + 100}#0", "score": 0},
                  {"query-id": str(q), "corpus-id": f"{q + 200}#0", "score": 0}]
    return {(r, f"{lang}-corpus"): {"corpus": corpus}, (r, f"{lang}-queries"): {"dev": queries},
            (r, f"{lang}-qrels"): {"dev": FakeDataset(qrels)}}


def test_miracl_reduced_pool_recipe(fake_hub):
    fake = fake_hub(_miracl_tables())
    ds = hub.load_miracl("es", n_queries=10, pool_size=120, seed=3)
    assert ds.name == "miracl-es" and ds.lang == "es"
    assert len(ds.queries) == 10 and set(ds.qrels) == set(ds.queries)
    assert len(ds.corpus) == 120
    for q, rels in ds.qrels.items():
        assert int(q) % 5 != 4  # only queries with a judged positive
        assert sum(g > 0 for g in rels.values()) == 1 and len(rels) == 3  # positive + 2 hard negatives
        assert set(rels) <= set(ds.corpus)
    assert ds.corpus[f"{next(iter(ds.qrels))}#0"].startswith("T")  # title joined to text
    assert ds.meta["recipe"] == {"n_queries": 10, "pool_size": 120, "seed": 3}
    calls = len(fake.calls)
    again = hub.load_miracl("es", n_queries=10, pool_size=120, seed=3)
    assert len(fake.calls) == calls  # cached: every precision searches the identical pool
    assert again.corpus == ds.corpus and again.queries == ds.queries
    other = hub.load_miracl("es", n_queries=10, pool_size=120, seed=4)
    assert other.queries != ds.queries


def test_miracl_pool_is_deterministic_and_bounded():
    corpus = {f"d{i}": "t" for i in range(50)}
    queries = {f"q{i}": "x" for i in range(5)}
    qrels = {f"q{i}": {f"d{i}": 1, f"d{i + 10}": 0} for i in range(5)}
    a = hub.miracl_pool(corpus, queries, qrels, n_queries=3, pool_size=20, seed=0)
    b = hub.miracl_pool(corpus, queries, qrels, n_queries=3, pool_size=20, seed=0)
    assert a == b and len(a[0]) == 20 and len(a[1]) == 3
    big = hub.miracl_pool(corpus, queries, qrels, n_queries=99, pool_size=999, seed=0)
    assert len(big[0]) == 50 and len(big[1]) == 5


def test_offline_is_a_clear_error(fake_hub):
    fake_hub({})
    with pytest.raises(DatasetError, match="could not load zeta-alpha-ai/NanoNFCorpus.*offline"):
        load_dataset("nano:nfcorpus")
    with pytest.raises(DatasetError, match="MIRACLRetrievalHardNegatives"):
        load_dataset("miracl:ja")


def test_missing_datasets_library(monkeypatch, tmp_path):
    monkeypatch.setenv("LFM_COLBERT_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(DatasetError, match=r"pip install 'lfm-colbert\[hub-data\]'"):
        load_dataset("nano:fiqa")


def test_nanobeir_names():
    assert hub.nanobeir_name("fiqa") == "NanoFiQA2018"
    assert hub.nanobeir_name("NanoQuoraRetrieval") == "NanoQuoraRetrieval"
    assert hub.nanobeir_name("climate-fever") == "NanoClimateFEVER"
    with pytest.raises(DatasetError, match="Did you mean nfcorpus"):
        hub.nanobeir_name("nfcorpuss")
