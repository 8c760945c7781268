"""Soak test of the index under faults (not run in CI): random-moment SIGKILLs of writers, readers
racing writers for minutes, and long churn, with a summary table.

    flock /tmp/lfm-bench.lock python bench/soak.py                 # 60 kills, 10 min of racing, 75 churn cycles
    python bench/soak.py --kills 10 --race-seconds 30 --churn 10   # a quick look

1. kills: a writer process runs a seeded stream of adds, upserts, deletes and compactions, printing an
   acknowledgement after each call returns; it is SIGKILLed at a random moment. The index must open,
   verify, and hold exactly the state after the last acknowledged write, or after the one in flight
   (each write is atomic). Then the next writer must work and leave no debris.
2. race: a writer process keeps writing (never fewer than RACE_FLOOR documents) while reader
   processes search (k=20), read documents and describe the index, from several threads sharing
   one Index. Every search must return 20 hits, each once.
3. churn: cycles of add, upsert and delete (compactions and merges follow) on an exact and a
   compressed index; afterwards the exact one must answer every query exactly as an index built
   fresh from the same documents, and both must hold exactly the documents they should.

Columns: trials, failures (anything wrong), acknowledged writes lost, short results (searches with
fewer hits than they should have), raw exceptions (anything but the package's own errors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from lfm_colbert.errors import LfmColbertError
from lfm_colbert.index import Index

DIM = 32
MODEL = {"model_id": "soak-vectors", "variant": "none", "dim": DIM, "fingerprint": "soak"}
RACE_FLOOR = 150
K = 20
STREAM = 1000  # writes a killed writer was going to make


def vec(doc_id: str, version: int = 0) -> np.ndarray:
    """A document's vectors, derived from its id (and version, for upserts): any process can rebuild them."""
    seed = int.from_bytes(hashlib.blake2b(f"{doc_id}/{version}".encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((16, DIM)).astype(np.float32)
    n = int(rng.integers(3, 12))
    v = centres[rng.integers(0, 16, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def queries(n: int, seed: int = 123) -> list[np.ndarray]:
    return [vec(f"query{i}", seed) for i in range(n)]


def ops(seed: int, start: dict[str, int], n: int):
    """A seeded stream of writes, and the state (id -> version) after each: (op, args, state)."""
    rng = random.Random(seed)
    state = dict(start)
    serial = 0
    for _ in range(n):
        live = sorted(state)
        r = rng.random()
        if r < 0.4 or len(live) < 40:
            ids = [f"s{seed}-{serial + j}" for j in range(rng.randint(1, 25))]
            serial += len(ids)
            op = ("add", ids)
            for i in ids:
                state[i] = 0
        elif r < 0.65:
            ids = rng.sample(live, rng.randint(1, min(10, len(live))))
            op = ("upsert", ids)
            for i in ids:
                state[i] += 1
        elif r < 0.92:
            ids = rng.sample(live, rng.randint(1, min(30, len(live) - 20)))
            op = ("delete", ids)
            for i in ids:
                del state[i]
        else:
            op = ("compact", [])
        yield op, dict(state)


def apply(index: Index, op: tuple[str, list[str]], versions: dict[str, int]) -> None:
    kind, ids = op
    if kind in ("add", "upsert"):
        index.add_vectors([vec(i, versions[i]) for i in ids], ids=ids, texts=[f"{i}/{versions[i]}" for i in ids],
                          metadata=[{"v": versions[i]} for i in ids], upsert=kind == "upsert")
    elif kind == "delete":
        index.delete(ids)
    else:
        index.compact()


def contents(index: Index) -> dict[str, int]:
    return {d.id: d.metadata["v"] for d in index}


def base(path: Path, compressed: bool, n: int = 120) -> dict[str, int]:
    opts = {"compress": 2, "n_centroids": 16, "train_tokens": 1200} if compressed else {}
    index = Index(path, MODEL, **opts)
    ids = [f"b{i}" for i in range(n)]
    for s in range(0, n, 40):
        part = ids[s : s + 40]
        apply(index, ("add", part), {i: 0 for i in part})
    index.close()
    return {i: 0 for i in ids}


# -- children --------------------------------------------------------------------------------------
def child_writer(path: str, seed: int, start: str, n: int) -> None:
    index = Index(path)
    for j, (op, state) in enumerate(ops(seed, json.loads(start), n)):
        apply(index, op, state)
        print(f"ack {j}", flush=True)


def child_reader(path: str, seconds: float, threads: int) -> None:
    """Search and read from `threads` threads sharing one Index; print a JSON report."""
    index = Index(path)
    qs = queries(8)
    stop = time.time() + seconds
    report = {"searches": 0, "short": 0, "errors": 0, "raw": 0, "examples": []}
    lock = threading.Lock()

    def loop(t: int) -> None:
        n = 0
        while time.time() < stop:
            try:
                hits = index.search_vectors(qs[(n + t) % len(qs)], k=K)
                short = len(hits) != K or len({h.id for h in hits}) != K
                if n % 7 == 0:
                    index.get([h.id for h in hits[:3]])
                    index.info()
                if n % 25 == 0:
                    index.verify_files()
                with lock:
                    report["searches"] += 1
                    report["short"] += short
            except LfmColbertError as exc:
                with lock:
                    report["errors"] += 1
                    report["examples"].append(f"{type(exc).__name__}: {exc}"[:300])
            except Exception:  # noqa: BLE001 - what the soak counts
                with lock:
                    report["raw"] += 1
                    report["examples"].append(traceback.format_exc()[-600:])
            n += 1

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    report["examples"] = report["examples"][:5]
    print(json.dumps(report), flush=True)


def child_race_writer(path: str, seconds: float, seed: int) -> None:
    """Write until `seconds` pass: adds, upserts, deletes (never below RACE_FLOOR documents)."""
    index = Index(path)
    rng = random.Random(seed)
    live = sorted(contents(index))
    versions = {i: 0 for i in live}
    serial, writes, stop = 0, 0, time.time() + seconds
    while time.time() < stop:
        r = rng.random()
        if r < 0.45 or len(live) < RACE_FLOOR + 30:
            ids = [f"r{serial + j}" for j in range(rng.randint(1, 20))]
            serial += len(ids)
            for i in ids:
                versions[i] = 0
            apply(index, ("add", ids), versions)
            live += ids
        elif r < 0.75:
            ids = rng.sample(live, rng.randint(1, 10))
            for i in ids:
                versions[i] += 1
            apply(index, ("upsert", ids), versions)
        else:
            ids = rng.sample(live, rng.randint(1, min(30, len(live) - RACE_FLOOR)))
            apply(index, ("delete", ids), versions)
            live = [i for i in live if i not in set(ids)]
        writes += 1
    print(json.dumps({"writes": writes}), flush=True)


# -- phases ------------------------------------------------------------------------------------------
def _child(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def kills(n: int, workdir: Path, rng: random.Random) -> dict:
    row = {"trials": 0, "failures": 0, "lost": 0, "short": 0, "raw": 0, "notes": []}
    templates = {}
    for compressed in (False, True):
        path = workdir / f"template-{compressed}"
        templates[compressed] = (path, base(path, compressed))
    for t in range(n):
        compressed = t % 2 == 1
        template, start = templates[compressed]
        path = workdir / f"kill{t}"
        shutil.copytree(template, path)
        seed = rng.randrange(1 << 30)
        stream = list(ops(seed, start, STREAM))  # longer than any writer lives: it dies mid-stream
        proc = _child("writer", str(path), str(seed), json.dumps(start), str(STREAM))
        acked = [-1]

        def read_acks(p=proc, acked=acked):
            for line in p.stdout:
                if line.startswith("ack "):
                    acked[0] = int(line.split()[1])

        reader = threading.Thread(target=read_acks)
        reader.start()
        time.sleep(rng.uniform(0.05, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        proc.stderr.close()
        row["trials"] += 1
        j = acked[0]
        row.setdefault("acks", []).append(j + 1)
        states = [start] + [s for _, s in stream]
        allowed = [states[j + 1]] + ([states[j + 2]] if j + 2 < len(states) else [])
        try:
            index = Index(path)
            got = contents(index)
            index.verify_files()
            hits = index.search_vectors(queries(3), k=K)
            if any(len(h) != min(K, len(got)) for h in hits):
                row["short"] += 1
            if len(allowed) > 1 and got == allowed[1] != allowed[0]:
                row["in_flight_committed"] = row.get("in_flight_committed", 0) + 1
            if got not in allowed:
                row["failures"] += 1
                touched = set(stream[j + 1][0][1]) if j + 1 < len(stream) else set()
                want = allowed[0]
                lost = [i for i in set(want) | set(got) if i not in touched and want.get(i) != got.get(i)]
                row["lost"] += len(lost)
                row["notes"].append(f"kill {t}: after ack {j}, {len(lost)} acknowledged changes missing")
            apply(index, ("add", [f"after{t}"]), {f"after{t}": 0})  # the next writer works, cleans up
            index.compact()
            named = {f"{r['id']:06d}" for r in index.catalog.segments()}
            left = {p.name for p in (path / "segments").iterdir()} - named
            if left:
                row["failures"] += 1
                row["notes"].append(f"kill {t}: debris left {sorted(left)[:3]}")
            index.verify_files()
            index.close()
        except LfmColbertError as exc:
            row["failures"] += 1
            row["notes"].append(f"kill {t}: {type(exc).__name__}: {exc}"[:300])
        except Exception:  # noqa: BLE001
            row["failures"] += 1
            row["raw"] += 1
            row["notes"].append(f"kill {t}: {traceback.format_exc()[-400:]}")
        shutil.rmtree(path, ignore_errors=True)
    acks = sorted(row.pop("acks", [0]))
    row["notes"].insert(0, f"writes acknowledged before the kill: min {acks[0]}, median {acks[len(acks) // 2]}, max {acks[-1]}; "
                           f"{row.pop('in_flight_committed', 0)} kills found the write in flight committed (and kept it)")
    return row


def race(seconds: float, workdir: Path, compressed: bool) -> dict:
    path = workdir / f"race-{compressed}"
    base(path, compressed, n=RACE_FLOOR + 60)
    writer = _child("race-writer", str(path), str(seconds), "7")
    readers = [_child("reader", str(path), str(seconds), str(threads)) for threads in (1, 2)]
    row = {"trials": 0, "failures": 0, "lost": 0, "short": 0, "raw": 0, "notes": []}
    out, err = writer.communicate()
    if writer.returncode != 0:
        row["failures"] += 1
        row["raw"] += "Traceback" in err and "LfmColbertError" not in err
        row["notes"].append(f"writer: {err[-400:]}")
    writes = json.loads(out.strip().splitlines()[-1])["writes"] if writer.returncode == 0 else 0
    for r in readers:
        out, err = r.communicate()
        try:
            rep = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            row["failures"] += 1
            row["notes"].append(f"reader died: {err[-400:]}")
            continue
        row["trials"] += rep["searches"]
        row["short"] += rep["short"]
        row["raw"] += rep["raw"]
        row["failures"] += rep["errors"] + rep["raw"] + rep["short"]
        row["notes"] += rep["examples"]
    row["notes"].insert(0, f"{writes} writes during {seconds:.0f} s")
    index = Index(path)
    index.verify_files()
    index.close()
    return row


def churn(cycles: int, workdir: Path, compressed: bool, seed: int) -> dict:
    path = workdir / f"churn-{compressed}"
    start = base(path, compressed, n=200)
    index = Index(path)
    rng = random.Random(seed)
    versions = dict(start)
    serial = 0
    row = {"trials": 0, "failures": 0, "lost": 0, "short": 0, "raw": 0, "notes": []}
    for _ in range(cycles):
        try:
            new = [f"c{serial + j}" for j in range(40)]
            serial += 40
            versions.update({i: 0 for i in new})
            apply(index, ("add", new), versions)
            up = rng.sample(sorted(versions), 10)
            for i in up:
                versions[i] += 1
            apply(index, ("upsert", up), versions)
            gone = rng.sample(sorted(versions), 40)
            apply(index, ("delete", gone), versions)
            for i in gone:
                del versions[i]
            row["trials"] += 1
            if contents(index) != versions:
                row["failures"] += 1
                row["lost"] += len(set(versions.items()) ^ set(contents(index).items()))
        except LfmColbertError as exc:
            row["failures"] += 1
            row["notes"].append(f"{type(exc).__name__}: {exc}"[:300])
        except Exception:  # noqa: BLE001
            row["failures"] += 1
            row["raw"] += 1
            row["notes"].append(traceback.format_exc()[-400:])
    index.verify_files()
    qs = queries(20)
    got = index.search_vectors(qs, k=K)
    row["short"] += sum(len(h) != K for h in got)
    if not compressed:  # an exact index answers exactly as one built fresh from the same documents
        fresh = Index(workdir / "fresh", MODEL)
        ids = sorted(versions)
        fresh.add_vectors([vec(i, versions[i]) for i in ids], ids=ids)
        want = fresh.search_vectors(qs, k=K)
        same = all([h.id for h in a] == [h.id for h in b] and np.allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
                   for a, b in zip(got, want))
        if not same:
            row["failures"] += 1
            row["notes"].append("churned index answers differently from a fresh one")
    info = index.info()
    row["notes"].insert(0, f"{info['documents']} documents, {info['segments']} segments, deleted {info['deleted_fraction']:.0%}")
    index.close()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--race-seconds", type=float, default=600.0, help="in total, split over exact and compressed")
    ap.add_argument("--churn", type=int, default=75)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "writer":
            child_writer(rest[0], int(rest[1]), rest[2], int(rest[3]))
        elif kind == "reader":
            child_reader(rest[0], float(rest[1]), int(rest[2]))
        else:
            child_race_writer(rest[0], float(rest[1]), int(rest[2]))
        return
    import torch

    caps = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    print(f"# soak: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch CPU capability {caps}, "
          f"python {platform.python_version()}")
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lfm-soak-") as tmp:
        work = Path(tmp)
        t0 = time.time()
        rows.append(("random-moment kills (exact + compressed)", kills(args.kills, work, rng), time.time() - t0))
        for compressed in (False, True):
            t0 = time.time()
            rows.append((f"readers racing a writer ({'compressed' if compressed else 'exact'})",
                         race(args.race_seconds / 2, work, compressed), time.time() - t0))
        for compressed in (False, True):
            t0 = time.time()
            rows.append((f"churn ({'compressed' if compressed else 'exact'})",
                         churn(args.churn, work, compressed, args.seed), time.time() - t0))
    print()
    print("| phase | trials | failures | acknowledged writes lost | short results | raw exceptions | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row, secs in rows:
        print(f"| {name} | {row['trials']} | {row['failures']} | {row['lost']} | {row['short']} | {row['raw']} | {secs:.0f} |")
    total = {k: sum(r[k] for _, r, _ in rows) for k in ("trials", "failures", "lost", "short", "raw")}
    print(f"| **total** | {total['trials']} | {total['failures']} | {total['lost']} | {total['short']} | {total['raw']} | |")
    print()
    for name, row, _ in rows:
        for note in row["notes"][:6]:
            print(f"- {name}: {note}")
    sys.exit(1 if total["failures"] or total["lost"] or total["short"] or total["raw"] else 0)


if __name__ == "__main__":
    main()
