"""Distributed encoding on a real two-node Ray cluster on this machine (ray.cluster_utils.Cluster, 1 CPU
per node, actors at 0.6 CPU so one fits per node), against a local `lfm-colbert index` of the same
corpus: identical ids, vectors, top-10; a worker killed mid-job; shards; resuming.

Every Ray call runs under a deadline (SIGALRM) as well as the job's own stall timeout: a resource
deadlock on a small cluster waits forever otherwise (../shared/docs/scale-and-serve.md §1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from lfm_colbert.cli import main
from lfm_colbert.index import Index

ray = pytest.importorskip("ray", reason="needs lfm-colbert[ray]")

from lfm_colbert.scale import index_sources, shards  # noqa: E402
from lfm_colbert.scale import ray as scale_ray  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"
QUERIES = [q for q in (CORPUS.parent / "queries.txt").read_text(encoding="utf-8").splitlines() if q.strip() and not q.startswith("#")]
COMMIT = ["--commit-every", "6", "--batch-size", "4"]  # 41 passages -> 7 commits, 7 blocks
RAY = ["--ray", "auto", "--ray-actors", "2", "--ray-cpus", "0.6"]
JOB = dict(address="auto", actors=2, cpus_per_actor=0.6, commit_every=6, batch_size=4, stall_timeout=120)


@contextlib.contextmanager
def deadline(seconds: int):
    def expire(*_):
        raise TimeoutError(f"a Ray call took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with deadline(180):
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 200 << 20,
                                                          "include_dashboard": False})
        c.add_node(num_cpus=1, object_store_memory=200 << 20)
        ray.init(address=c.address, logging_level=logging.WARNING)
        c.wait_for_nodes()
    yield c
    with deadline(120):
        ray.shutdown()
        c.shutdown()


@pytest.fixture(autouse=True)
def short_stall(monkeypatch):
    monkeypatch.setattr(scale_ray, "STALL_TIMEOUT", 120.0)


@pytest.fixture(scope="module")
def local(tmp_path_factory, tiny_checkpoint):
    """The reference: `lfm-colbert index` of the corpus on this process, no Ray."""
    path = tmp_path_factory.mktemp("local") / "idx"
    assert main(["index", str(CORPUS), "--index", str(path), "--model", str(tiny_checkpoint), "-q", *COMMIT]) == 0
    return Index(path, str(tiny_checkpoint))


def _same_as_local(path: Path, local: Index, model: str) -> None:
    got = Index(path, model)
    ids = [d.id for d in local]
    assert [d.id for d in got] == ids and len(got) == len(ids)
    assert [got.get(i) for i in ids] == [local.get(i) for i in ids]  # texts, metadata, parents
    for a, b in zip(got.vectors(ids), local.vectors(ids)):
        assert a.shape == b.shape and np.allclose(a, b, atol=2e-3)  # stored float16; equal but for its rounding
    assert [[h.id for h in hits] for hits in got.search(QUERIES, k=10)] == \
        [[h.id for h in hits] for hits in local.search(QUERIES, k=10)]


def test_cli_ray_index_equals_local(cluster, local, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "ray-idx"
    with deadline(300):
        assert main(["index", str(CORPUS), "--index", str(out), "--model", str(tiny_checkpoint), "-q", *COMMIT, *RAY]) == 0
    assert f"indexed {len(local)} passages" in capsys.readouterr().out
    _same_as_local(out, local, str(tiny_checkpoint))
    with deadline(120):  # run again: nothing changed, nothing encoded, no cluster job at all
        assert main(["index", str(CORPUS), "--index", str(out), "--model", str(tiny_checkpoint), "-q", *COMMIT, *RAY]) == 0
    assert "indexed 0 passages" in capsys.readouterr().out


def test_two_nodes_and_shards(cluster, local, tiny_checkpoint, tmp_path):
    d = tmp_path / "shards"
    with deadline(300):
        got = index_sources([CORPUS], None, shards=d, model=str(tiny_checkpoint), **JOB)
    assert len(got["nodes"]) == 2, got  # one actor per node, both ready before the first block: both encoded
    parts = sorted(p.name for p in d.iterdir())
    read = list(shards.read_shards(d))
    assert len(read) == 7 and sum(len(s.ids) for s in read) == len(local) == got["passages"]
    by_id = {i: v for s in read for i, v in zip(s.ids, s.vectors)}
    ids = [doc.id for doc in local]
    assert sorted(by_id) == sorted(ids)
    assert all(np.allclose(by_id[i].astype(np.float32), v, atol=2e-3) for i, v in zip(ids, local.vectors(ids)))
    with deadline(300):  # again: every block is already there under its content name; nothing new
        index_sources([CORPUS], None, shards=d, model=str(tiny_checkpoint), **JOB)
    assert sorted(p.name for p in d.iterdir()) == parts
    loaded = tmp_path / "loaded"
    assert shards.load_shards(d, str(loaded)) == (len(local), 0)
    _same_as_local(loaded, local, str(tiny_checkpoint))


def test_killed_actor_is_replaced_and_nothing_lost_or_doubled(cluster, local, tiny_checkpoint, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv(scale_ray.KILL_ENV, f"3:{marker}")  # the actor given block 3 SIGKILLs itself, once
    out = tmp_path / "idx"
    with deadline(300):
        got = index_sources([CORPUS], str(out), model=str(tiny_checkpoint), **JOB)
    assert marker.exists()  # the worker did die mid-job
    assert got["passages"] == len(local) and got["skipped"] == 0
    _same_as_local(out, local, str(tiny_checkpoint))


def test_interrupted_job_resumes(cluster, tiny_checkpoint, tmp_path):
    """What an interrupted job committed stays; the next run encodes only the rest, as a local rerun does.

    (Vectors of LFM2.5 depend on which passages share a padded batch, so the reference is a local
    run interrupted at the same point: the corpus folder holding its first file only, then all of it.
    Ids and `source` metadata come from the folder's name, so both runs name the same documents.)"""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "passages.jsonl", corpus / "passages.jsonl")
    run = ["index", str(corpus), "--model", str(tiny_checkpoint), "-q", *COMMIT]
    ref, out = tmp_path / "ref", tmp_path / "idx"
    for path in (ref, out):
        assert main([*run, "--index", str(path)]) == 0
    done = len(Index(out))
    shutil.copytree(CORPUS / "guides", corpus / "guides")
    assert main([*run, "--index", str(ref)]) == 0
    with deadline(300):
        got = index_sources([corpus], str(out), model=str(tiny_checkpoint), **JOB)
    assert got["skipped"] == done and got["passages"] == len(Index(ref)) - done > 0
    _same_as_local(out, Index(ref, str(tiny_checkpoint)), str(tiny_checkpoint))


def test_a_job_that_cannot_fit_is_refused_not_left_waiting(cluster, tiny_checkpoint, tmp_path, capsys):
    with deadline(60):
        assert main(["index", str(CORPUS), "--index", str(tmp_path / "i"), "--model", str(tiny_checkpoint), "-q",
                     "--ray", "auto", "--ray-actors", "3", "--ray-cpus", "0.6"]) == 2  # 1.8 CPUs, but 0.6 + 0.6 > 1 node
    assert "do not fit this cluster (2 CPUs, 0 GPUs on 2 nodes; 2 such actors fit)" in capsys.readouterr().err
    with pytest.raises(scale_ray.RayJobError, match="do not fit"):
        scale_ray.plan_actors(1, 0.5, 1)  # a GPU the cluster does not have
