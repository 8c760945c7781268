"""Fault-injection helpers: small vector collections, writers run (and killed) in another process,
and damage done to files the way disks and people do it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

MODEL = {"model_id": "vectors-only", "variant": "none", "dim": 16, "fingerprint": "faults"}


def vectors(n: int, seed: int = 0, tokens: tuple[int, int] = (3, 9), dim: int = 16) -> list[np.ndarray]:
    """`n` documents of unit token vectors around a few shared directions (so documents compete)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim)).astype(np.float32)
    out = []
    for t in rng.integers(tokens[0], tokens[1] + 1, size=n):
        v = centres[rng.integers(0, 8, size=t)] + 0.5 * rng.standard_normal((t, dim)).astype(np.float32)
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return out


def queries(n: int, seed: int = 99, dim: int = 16) -> list[np.ndarray]:
    return vectors(n, seed=seed, tokens=(4, 4), dim=dim)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process that imports the same lfm_colbert as this one."""
    import lfm_colbert

    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(lfm_colbert.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    return env


# A writer in another process; `sys.argv[1]` is the index, `sys.argv[2]` the operation (see WRITE_OPS).
WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from faultkit import write_op
    write_op(sys.argv[1], sys.argv[2])
    print("done", flush=True)
    """
).format(tests=str(Path(__file__).resolve().parent))

WRITE_OPS = ("add", "upsert", "delete", "merge", "compact", "train", "rebuild")


def write_op(path, op: str) -> None:
    """One write of each kind on an index built by `base_index` (docs d0..d79, d75..d79 deleted)."""
    from lfm_colbert.index import Index

    docs = vectors(200, seed=7)
    index = Index(path)
    if op in ("add", "train"):  # "train": on an index about to reach train_tokens
        index.add_vectors(docs[100:120], ids=[f"new{i}" for i in range(20)], texts=["new"] * 20)
    elif op == "upsert":
        index.add_vectors(docs[120:130], ids=[f"d{i}" for i in range(10)], texts=["up"] * 10, upsert=True)
    elif op == "delete":
        index.delete([f"d{i}" for i in range(0, 60, 2)])  # 30 of 75: compaction follows
    elif op == "merge":
        small = vectors(8, seed=8, tokens=(4, 4))
        for i in range(8):  # the 8th small add merges a size tier
            index.add_vectors(small[i : i + 1], ids=[f"m{i}"])
    elif op == "compact":
        index.compact()
    elif op == "rebuild":  # the keyword index built again from the stored texts (one transaction)
        index.rebuild_lexical()
    else:
        raise ValueError(op)
    index.close()


def base_index(path, kind: str):
    """80 documents in two segments, 5 of them deleted. kind: exact, plaid (codec trained), or
    untrained (compressed, float16 until the next add trains the codec)."""
    from lfm_colbert.index import Index

    docs = vectors(200, seed=7)
    tokens = sum(len(d) for d in docs[:80])  # more than the base holds: the next add trains
    opts = {"exact": {}, "plaid": {"compress": 2, "n_centroids": 8, "train_tokens": 1},
            "untrained": {"compress": 2, "n_centroids": 8, "train_tokens": tokens + 1}}[kind]
    index = Index(path, MODEL, **opts)
    for s in (0, 40):
        index.add_vectors(docs[s : s + 40], ids=[f"d{i}" for i in range(s, s + 40)], texts=[f"t{i}" for i in range(s, s + 40)],
                          metadata=[{"n": i} for i in range(s, s + 40)])
    index.delete([f"d{i}" for i in range(75, 80)])
    index.close()


def run_writer(path: Path, op: str, pause: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess | str:
    """Run WRITER; with `pause`, wait for it to reach that pause point, SIGKILL it there and return
    "killed" (or "finished" if it never got there)."""
    env = child_env(**({"LFM_COLBERT_PAUSE_AT": pause} if pause else {}))
    if pause is None:
        return subprocess.run([sys.executable, "-c", WRITER, str(path), op], capture_output=True, text=True,
                              env=env, timeout=timeout)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), op], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()
        if line.strip() == f"paused at {pause}":
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=timeout)
            return "killed"
        proc.wait(timeout=timeout)
        return "finished" if proc.returncode == 0 else f"failed: {proc.stderr.read()[-2000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def snapshot(index) -> dict[str, tuple]:
    """Everything a user can read back: id -> (text, metadata, parent), in one call per page."""
    return {d.id: (d.text, d.metadata, d.parent) for d in index.list()}


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


def patch_everywhere(monkeypatch, name: str, make) -> None:
    """Replace function `name` in every lfm_colbert.index module that holds it (its own module and
    those that imported it by name) with `make(original)`."""
    mods = [m for n, m in sorted(sys.modules.items()) if n.startswith("lfm_colbert.index") and m is not None]
    originals = {id(getattr(m, name)) : getattr(m, name) for m in mods if callable(getattr(m, name, None))}
    assert originals, f"no lfm_colbert.index module defines {name}"
    real = next(iter(originals.values()))
    wrapped = make(real)
    for m in mods:
        if getattr(m, name, None) is real:
            monkeypatch.setattr(m, name, wrapped)


def lexical_in_step(index) -> None:
    """The keyword index agrees with the catalog: the same live documents, and for each the postings
    a fresh tokenization of its stored text gives (lfm_colbert.index.lexical)."""
    from lfm_colbert.index import lexical

    stored, fresh = lexical.stored_postings(index.catalog), lexical.expected_postings(index.catalog)
    assert set(stored) == set(fresh) == {d.id for d in index.list() if d.text is not None}
    assert stored == fresh
