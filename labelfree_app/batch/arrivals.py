"""Which files in a watched folder are complete: new images in arrival order, each once it has settled.

A file is *settled* when its size and modification time have not changed for ``settle_s`` seconds
(a microscope that writes a file in chunks keeps changing both). Names that acquisition software
uses while writing (``.part``, ``.tmp``, ``~`` or ``.`` in front…) are never inputs: the file is
seen under its final name once renamed. A file that was predicted is not offered again unless it
changes afterwards (rewritten under the same name), so a run that read it too early is redone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from labelfree_app.batch.plan import BatchInput, find_inputs

TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".filepart", ".lock",
                      ".writing", "~")
Signature = tuple[int, int]  # (bytes, newest modification time in ns); a folder sums its files


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` looks like a file still being written under a temporary name."""
    lowered = name.lower()
    return lowered.startswith((".", "~")) or lowered.endswith(TEMPORARY_SUFFIXES)


def signature(path: Path) -> Signature | None:
    """Size and modification time of a file (or of every file of an OME-Zarr folder); None if gone."""
    try:
        if not path.is_dir():
            info = path.stat()
            return info.st_size, info.st_mtime_ns
        size, newest = 0, path.stat().st_mtime_ns
        for root, _, names in os.walk(path):
            for name in names:
                info = os.stat(os.path.join(root, name))
                size, newest = size + info.st_size, max(newest, info.st_mtime_ns)
        return size, newest
    except OSError:
        return None


@dataclass
class Candidate:
    """A file seen in the folder: when it was first seen, and since when it has not changed."""

    entry: BatchInput
    arrival: int  # order of first sight
    seen: Signature
    unchanged_since: float
    taken: Signature | None = None  # the signature it was last predicted from


class ArrivalQueue:
    """The images under ``folder`` (not under ``exclude``), offered once each when settled."""

    def __init__(self, folder: Path, *, exclude: Path | None = None, settle_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder, self.exclude, self.settle_s, self.clock = Path(folder), exclude, settle_s, clock
        self.candidates: dict[Path, Candidate] = {}
        self._arrivals = 0

    def scan(self) -> None:
        """Look at the folder once: new files join in order of modification time, changed ones restart
        their settling, vanished ones are forgotten. A folder that cannot be read raises its sentence."""
        now = self.clock()
        found = {}
        for entry in find_inputs([self.folder], exclude=self.exclude):
            if not any(is_temporary_name(part) for part in Path(entry.key).parts):
                found[entry.path] = entry
        for path in [p for p in self.candidates if p not in found]:
            del self.candidates[path]
        new = []
        for path, entry in found.items():
            current = signature(path)
            if current is None:
                continue
            known = self.candidates.get(path)
            if known is None:
                new.append((current[1], entry, current))
            elif current != known.seen:
                known.seen, known.unchanged_since = current, now
        for _, entry, current in sorted(new, key=lambda item: (item[0], item[1].key)):
            self.candidates[entry.path] = Candidate(entry, self._arrivals, current, now)
            self._arrivals += 1

    def ready(self) -> list[BatchInput]:
        """Settled files not yet predicted (or changed since), in arrival order."""
        now = self.clock()
        settled = [c for c in self.candidates.values()
                   if now - c.unchanged_since >= self.settle_s and c.taken != c.seen]
        return [c.entry for c in sorted(settled, key=lambda c: c.arrival)]

    def pending(self) -> int:
        """Files seen but not yet settled."""
        now = self.clock()
        return sum(1 for c in self.candidates.values() if c.taken != c.seen and now - c.unchanged_since < self.settle_s)

    def settling(self) -> list[BatchInput]:
        """Files seen but not yet settled, in arrival order (those ``pending`` counts)."""
        now = self.clock()
        waiting = [c for c in self.candidates.values() if c.taken != c.seen and now - c.unchanged_since < self.settle_s]
        return [c.entry for c in sorted(waiting, key=lambda c: c.arrival)]

    def next_settling_in(self) -> float | None:
        """Seconds until the next unsettled file may settle (None: none is settling)."""
        now = self.clock()
        waits = [self.settle_s - (now - c.unchanged_since) for c in self.candidates.values() if c.taken != c.seen]
        return max(0.0, min(waits)) if waits else None

    def was_predicted(self, entry: BatchInput) -> bool:
        """Whether ``entry`` was predicted before from other content (its outputs are then redone)."""
        candidate = self.candidates.get(entry.path)
        return candidate is not None and candidate.taken is not None

    def predicted(self, entry: BatchInput, started: Signature | None) -> bool:
        """Record that ``entry`` was predicted from what it was at ``started`` (``Candidate.seen`` when
        its job began); False when it changed since, so it is offered again once settled."""
        candidate = self.candidates.get(entry.path)
        if candidate is None or started is None:
            return False
        candidate.taken = started
        current = signature(entry.path)
        if current != started and current is not None:
            candidate.seen, candidate.unchanged_since = current, self.clock()
        return current == started

    def seen(self, entry: BatchInput) -> Signature | None:
        candidate = self.candidates.get(entry.path)
        return candidate.seen if candidate is not None else None
