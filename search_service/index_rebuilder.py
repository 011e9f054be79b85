"""Background index rebuilds of one collection: one thread at a time, started by a write.

The thread builds from the index's state of the moment without any lock (compaction, ScaNN
training and tuning: vector_index.py), then takes the collection's write lock for the swap,
which carries over the writes made meanwhile, and starts the next rebuild if one is due
already. So no write waits for a build, and searches go on with the old index until the swap.
It runs at a lower CPU priority, with ScaNN's training on one thread by default
(IndexPolicy.rebuild_threads), so that searches keep the CPU on a small host. A long tail gets
a searcher of its own first (a delta: vector_index.py), swapped in the same way.

Settling: a rebuild is due while writes go on only when the tail reaches a share of the index
(IndexPolicy.tail_fraction), since each costs a whole build; but every search scans the tail
exactly, so a tail left behind when writes stop (up to 10 % of the index: at 1M items, 78k rows
made each search take milliseconds instead of tens of microseconds) would slow searches for as
long as the collection is only read. So once the tail or the dead slots reach `tail_rows`, a
thread waits for `_SETTLE_SECONDS` without a write, then rebuilds (`wait` does not wait for the
pause: its caller says writes are over).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable

from search_service.vector_index import VectorIndex
from server_toolkit.load_limits import map_large_allocations

logger = logging.getLogger(__name__)

_NICE = 10
_JOIN_SECONDS = 60.0  # at close: a rebuild of 1M items takes ~10-30 s on 2 cores
_SETTLE_SECONDS = 2.0  # writes paused this long: the tail is folded in (module docstring)


class IndexRebuilder:
    def __init__(self, index: VectorIndex, write_lock: threading.Lock, label: str, is_open: Callable[[], bool]) -> None:
        self._index = index
        self._write_lock = write_lock
        self._label = label  # the collection's name, for log lines
        self._is_open = is_open
        self._thread: threading.Thread | None = None  # the rebuild under way (or settling), if any
        self._stopping = threading.Event()
        # glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is freed; a rebuild
        # frees many (ScaNN's training, the tuner's score blocks), and blocks of that size would then
        # stay in the heap, fragmented: 0.55x the raw vectors at 200k items, measured. Fixed at 128 KiB.
        map_large_allocations(128 * 1024)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start_if_due(self, *, settled: bool = False) -> None:
        """Under the write lock. `settled`: the caller knows writes have paused (no waiting)."""
        if self._thread is not None or not self._is_open():
            return
        if self._index.needs_rebuild():
            settle = False
        elif self._index.needs_rebuild(settled=True):
            settle = not settled
        else:
            return
        # Not a daemon: the interpreter waits for it at exit instead of killing ScaNN mid-training.
        self._thread = threading.Thread(target=self._run, args=(settle,), name=f"rebuild-{self._label}")
        self._thread.start()

    def wait(self) -> None:
        """Returns once no rebuild is under way or due."""
        while True:
            with self._write_lock:
                if self._thread is None:
                    self.start_if_due(settled=True)
                thread = self._thread
            if thread is None:
                return
            thread.join()

    def stop(self) -> None:
        """After the collection closed: its result is dropped; wait so no training outlives the store."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=_JOIN_SECONDS)

    def _quiet(self) -> bool:
        """Waits until no write came for _SETTLE_SECONDS (True), or a rebuild fell due by the
        write rules meanwhile (True: no reason to wait further), or the collection closed (False)."""
        version = self._index.state.version
        while not self._stopping.wait(_SETTLE_SECONDS):
            if self._index.state.version == version or self._index.needs_rebuild():
                return True
            version = self._index.state.version
        return False

    def _run(self, settle: bool) -> None:
        if settle and not self._quiet():
            with self._write_lock:
                self._thread = None
            return
        try:
            # At the searches' own priority: until the delta is in, each of them scans the tail.
            self._delta_first()
            _lower_this_threads_priority()
            rebuilt = self._index.build(self._index.state)
        except Exception:  # writes are durable and applied; searches stay correct on the old index
            logger.exception("collection %r: rebuilding the index failed", self._label)
            rebuilt = None
        with self._write_lock:
            self._thread = None
            installed = rebuilt is not None and self._is_open()
            if installed:
                started = time.monotonic()
                self._index.install(rebuilt)
                logger.info("collection %r: new index swapped in (%.3fs under the write lock)", self._label, time.monotonic() - started)
                self.start_if_due()
        del rebuilt  # the old table and searcher go with it (once no search holds their state)
        if installed:
            _return_free_memory()

    def _delta_first(self) -> None:
        """A long tail gets a searcher of its own before the whole is rebuilt (vector_index.py)."""
        source = self._index.state
        delta = self._index.build_delta(source)
        if delta is not None:
            with self._write_lock:
                if self._is_open():
                    self._index.install_delta(delta, source)


def _lower_this_threads_priority() -> None:
    """Background work at nice 10 (Linux takes a thread id here, and ScaNN's training threads
    inherit it): searches take the CPU first. Measured at 100k items on 2 busy cores: searches
    were descheduled for 8 ms slices while a rebuild at the same priority trained."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
    except (OSError, AttributeError):  # not Linux, or not allowed: same priority, still correct
        pass


def _return_free_memory() -> None:
    """glibc keeps freed memory for reuse; after a rebuild dropped a whole table and searcher that
    is hundreds of MB at 1M items, so hand it back (malloc_trim). Elsewhere: nothing."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
