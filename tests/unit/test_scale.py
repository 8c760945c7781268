"""Ray-free parts of distributed encoding: the blocks it encodes and the sharded files it writes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from lfm_colbert.errors import InputError
from lfm_colbert.index import Index

pytest.importorskip("pyarrow", reason="needs lfm-colbert[ray]")

from lfm_colbert.scale import shards  # noqa: E402
from lfm_colbert.scale.ray import commit_runs, plan_blocks  # noqa: E402

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 8, "fingerprint": "f1"}


def _passages(spec):
    """[("doc", n_passages), ...] -> passages with ids doc#i and parent doc."""
    return [SimpleNamespace(id=f"{d}#{i}", parent=d, text=f"{d} {i}", metadata={"i": i}) for d, n in spec for i in range(n)]


def test_commit_runs_never_split_a_document():
    ps = _passages([("a", 3), ("b", 1), ("c", 5), ("d", 2), ("e", 1)])
    for size in (1, 2, 4, 100):
        runs = [[p.id for p in r] for r in commit_runs(ps, size)]
        assert [i for r in runs for i in r] == [p.id for p in ps]
        assert all(len({p.parent for p in r} & {p.parent for p in q}) == 0 for r, q in zip(commit_runs(ps, size), list(commit_runs(ps, size))[1:]))
    assert [len(r) for r in commit_runs(ps, 4)] == [4, 5, 3]


def test_blocks_are_index_add_encode_calls():
    ps = _passages([("a", 300), ("b", 250), ("c", 10)])
    blocks = plan_blocks(ps, commit_every=400, batch_size=32)  # runs: a+b (550), c; calls of 256 within each
    assert [len(b) for b in blocks] == [256, 256, 38, 10]
    assert [len(b) for b in plan_blocks(ps, commit_every=400, batch_size=300)] == [300, 250, 10]
    assert [p.id for b in blocks for p in b] == [p.id for p in ps]


def _write(tmp_path, ids, vecs, key="k1"):
    d = shards.prepare(tmp_path / "shards", MODEL)
    meta = [json.dumps({"i": n}) for n in range(len(ids))]
    shards.write_shard(d, key, ids, ["p"] * len(ids), [f"text {i}" for i in ids], meta, vecs)
    return d


def test_shards_round_trip_and_load(tmp_path):
    rng = np.random.default_rng(0)
    vecs = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 1, 4)]
    d = _write(tmp_path, ["x", "y", "z"], vecs)
    [s] = list(shards.read_shards(d))
    assert s.ids == ["x", "y", "z"] and s.parents == ["p"] * 3 and s.metadata[2] == {"i": 2}
    assert all(np.array_equal(a, b.astype(np.float16)) for a, b in zip(s.vectors, vecs))
    assert shards.doclens_of(d, "k1") == [3, 1, 4]
    index = Index(tmp_path / "idx", MODEL)
    assert shards.load_shards(d, index) == (3, 0)
    assert shards.load_shards(d, index) == (0, 3)  # resumable: what is there stays
    assert index.get("z").text == "text z" and np.array_equal(index.vectors(["y"])[0], s.vectors[1].astype(np.float32))


def test_shard_directories_are_guarded(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.txt").write_text("mine")
    with pytest.raises(InputError, match="not a shard directory"):
        shards.prepare(tmp_path / "busy", MODEL)
    assert (tmp_path / "busy" / "thesis.txt").read_text() == "mine"
    shards.prepare(tmp_path / "s", MODEL)
    shards.prepare(tmp_path / "s", MODEL)  # the same model again: fine
    with pytest.raises(InputError, match="another model"):
        shards.prepare(tmp_path / "s", {**MODEL, "fingerprint": "f2"})


def test_shard_keys_name_contents():
    k = shards.shard_key(["a", "b"], ["t1", "t2"], [None, None], ["{}", "{}"], "f1")
    assert k == shards.shard_key(["a", "b"], ["t1", "t2"], [None, None], ["{}", "{}"], "f1")
    assert k != shards.shard_key(["a", "b"], ["t1", "t2!"], [None, None], ["{}", "{}"], "f1")
    assert k != shards.shard_key(["a", "b"], ["t1", "t2"], [None, None], ["{}", "{}"], "f2")


def _nodes(*resources):
    return [{"Alive": True, "Resources": r} for r in resources] + [{"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]


def test_actor_plans(monkeypatch):
    """Default actor sizes on clusters this machine cannot be (GPUs, big nodes), from Ray's node list."""
    ray = pytest.importorskip("ray", reason="needs lfm-colbert[ray]")
    from lfm_colbert.scale.ray import RayJobError, plan_actors

    def cluster(*resources):
        monkeypatch.setattr(ray, "nodes", lambda: _nodes(*resources))

    cluster({"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0})
    assert plan_actors(None, None, None) == (4, 1.0, 1.0, 1)  # one actor per GPU, a CPU each
    assert plan_actors(None, None, 0) == (2, 15.5, 0.0, 16)  # CPUs only: one per node, all but half a CPU
    with pytest.raises(RayJobError, match="5 actors .* do not fit .* 4 such actors fit"):
        plan_actors(5, None, None)
    cluster({"CPU": 2.0}, {"CPU": 2.0})  # this project's small machines
    assert plan_actors(None, None, None) == (2, 1.5, 0.0, 2)
    assert plan_actors(4, None, None) == (4, 0.75, 0.0, 1)  # two per node, sharing 1.5 CPUs
    with pytest.raises(RayJobError, match="3 actors of 1.5 CPUs"):
        plan_actors(3, 1.5, None)  # 4.5 CPUs > 4, and 1.5 + 1.5 > a node's 2 CPUs anyway
    with pytest.raises(RayJobError, match="1 GPUs"):
        plan_actors(1, 0.5, 1)
    with pytest.raises(InputError):
        plan_actors(0, None, None)


def test_ray_client_addresses_are_refused_clearly(monkeypatch):
    ray = pytest.importorskip("ray", reason="needs lfm-colbert[ray]")
    from lfm_colbert.scale.ray import RayJobError, connect

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RayJobError, match="Ray Client"):
        connect("ray://head:10001")
