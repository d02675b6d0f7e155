"""A time-bucketed spool of planned events, bounded in memory.

People are planned one after another, but the platform must see their events in time
order. The spool files each event under its week; once more than ``limit`` events are
buffered, every buffer is appended to its bucket's pickle file in ``directory``.
Draining yields the buckets in time order, each sorted by (at, rank, person, seq).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path

from quanyu.demo.season import DAY
from quanyu.demo.timeline import Event

BUCKET_SECONDS = 7 * DAY
ORDER = itemgetter(0, 1, 2, 3)


class Spool:
    def __init__(self, *, horizon: int, directory: Path, limit: int = 250_000) -> None:
        self.directory = directory
        self.limit = limit
        self._buffers: list[list[Event]] = [[] for _ in range(horizon // BUCKET_SECONDS + 1)]
        self._spilled = [False] * len(self._buffers)
        self._buffered = 0
        self.count = 0

    def add(self, events: Iterable[Event]) -> None:
        buffers = self._buffers
        for event in events:
            buffers[event[0] // BUCKET_SECONDS].append(event)
            self._buffered += 1
            self.count += 1
        if self._buffered > self.limit:
            self._spill()

    def _path(self, bucket: int) -> Path:
        return self.directory / f"bucket-{bucket:05d}.pickle"

    def _spill(self) -> None:
        for i, buffer in enumerate(self._buffers):
            if buffer:
                with self._path(i).open("ab") as f:
                    pickle.dump(buffer, f, protocol=pickle.HIGHEST_PROTOCOL)
                self._spilled[i] = True
                self._buffers[i] = []
        self._buffered = 0

    def drain(self) -> Iterator[list[Event]]:
        """Each bucket's events in time order; a bucket is read back and removed once."""
        for i in range(len(self._buffers)):
            events = self._buffers[i]
            self._buffers[i] = []
            if self._spilled[i]:
                path = self._path(i)
                with path.open("rb") as f:
                    while True:
                        try:
                            events.extend(pickle.load(f))  # our own file, written above
                        except EOFError:
                            break
                path.unlink()
            if events:
                events.sort(key=ORDER)
                yield events
