"""Reader pins: how a writer knows which committed states readers (in any process) still read.

A reader about to read generation g creates `readers/<g>-<random>.pin` and holds an OS lock on it
(flock on POSIX, msvcrt on Windows) while it reads. A writer removes the files and rows a commit
retired only once no live pin names a generation that still needs them; a pin whose lock it can
take belongs to a process that died, and is removed. Files are never deleted under a reader, so
this works where open files cannot be deleted (Windows) as well as where they can.

Protocol (see Reader.snapshot): read the current generation g0, create the pin for g0, then read
the generation g >= g0 to use. A writer that listed the pins before this pin existed had already
committed whatever it purges for, so g is past it; one that lists them after sees g0 <= g.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

READERS = "readers"
# A pin younger than this is alive even if unlocked: the lock is taken right after creating the file.
GRACE_S = 10.0
# Where no OS lock exists at all, an unlocked pin counts as alive for this long.
UNLOCKED_MAX_AGE_S = 3600.0


def _lock(fd: int, blocking: bool) -> bool | None:
    """Take an exclusive lock on fd: True if taken, False if held elsewhere, None if this platform has no lock."""
    if os.name == "nt":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


class Pin:
    """A held pin; `release()` (or garbage collection) removes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd is None:
            return
        os.close(self.fd)  # releases the lock (first: Windows cannot delete a file still open)
        self.fd = None
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a writer removes it later

    def __del__(self) -> None:  # a reader that forgot to release
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def pin(root: Path, generation: int) -> Pin | None:
    """Pin `generation` for the calling reader; None where the index cannot be written (read-only
    media): no writer can purge there either."""
    folder = root / READERS
    path = folder / f"{generation:012d}-{uuid.uuid4().hex}.pin"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileNotFoundError:
        try:
            folder.mkdir(exist_ok=True)  # an index written before pins existed
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except OSError:
            return None
    except OSError:
        return None
    _lock(fd, blocking=True)
    return Pin(path, fd)


def oldest(root: Path) -> int | None:
    """The smallest generation a live reader pins (None when none does); removes dead readers' pins."""
    folder = root / READERS
    try:
        names = [p for p in os.listdir(folder) if p.endswith(".pin")]
    except OSError:
        return None
    low = None
    now = time.time()
    for name in names:
        path = folder / name
        try:
            gen = int(name.split("-", 1)[0])
        except ValueError:
            continue  # not ours
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue  # released meanwhile
        try:
            age = now - os.fstat(fd).st_mtime
            taken = _lock(fd, blocking=False)
            dead = (taken is True and age > GRACE_S) or (taken is None and age > UNLOCKED_MAX_AGE_S)
            if dead:
                path.unlink(missing_ok=True)
                continue
        finally:
            os.close(fd)
        low = gen if low is None else min(low, gen)
    return low
