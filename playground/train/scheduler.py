"""How many Train page runs train at once on one server, and who waits: at most `max_trainers()` runs
train at a time (the server setting PLAYGROUND_MAX_TRAINERS; default the machine's cores minus one, at
least one, leaving a core to the pages), each with `threads_per_trainer()` torch threads so that together
they do not oversubscribe the cores; a run past the bound waits in a first-come, first-served queue and
starts by itself when a slot frees.

The scheduler knows sessions only weakly: a session that is gone (its browser session ended and was
collected) or whose trainer died gives its slot back the next time anyone asks.
"""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections.abc import Mapping

ENV = "PLAYGROUND_MAX_TRAINERS"
MAX_SETTING = 256


def cores() -> int:
    """The cores this process may use (its affinity, where the platform tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def max_trainers(environ: Mapping[str, str] = os.environ) -> int:
    """The server's bound on runs training at once; ValueError saying how to fix a bad setting."""
    value = environ.get(ENV, "").strip()
    if not value:
        return max(1, cores() - 1)
    if not value.isdigit() or not 1 <= int(value) <= MAX_SETTING:
        raise ValueError(
            f"the server setting {ENV}={value!r} must be a whole number from 1 to {MAX_SETTING} (how many "
            f"runs may train at once): fix it, or unset it for the default, cores - 1 = {max(1, cores() - 1)}"
        )
    return int(value)


def threads_per_trainer(n_trainers: int) -> int:
    """torch threads for each trainer: the cores left beside the server's, shared by the trainers."""
    return max(1, (cores() - 1) // n_trainers)


class Scheduler:
    """At most `limit` sessions hold a slot; the others wait in order. A session offers `launch()`
    (called, maybe from another session's thread, when its turn comes) and `holds_slot()` (False once
    its trainer ended or paused, which gives the slot back)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.RLock()
        self._holders: list[weakref.ref] = []
        self._waiting: list[weakref.ref] = []

    def request(self, session) -> bool:
        """A slot for this session: True if it holds one now (launch it yourself), False if it waits
        (its `launch` is called when its turn comes)."""
        with self._lock:
            self._prune()
            if any(ref() is session for ref in self._holders + self._waiting):
                return any(ref() is session for ref in self._holders)
            if len(self._holders) >= self.limit and not self._waiting:
                gc.collect()  # a browser session that ended may still hold a slot until it is collected
                self._prune()
            if len(self._holders) < self.limit and not self._waiting:
                self._holders.append(weakref.ref(session))
                return True
            self._waiting.append(weakref.ref(session))
            return False

    def release(self, session) -> None:
        """The session trains no more (paused, ended, reset) or waits no more; the next in line starts."""
        with self._lock:
            self._holders = [r for r in self._holders if r() is not session]
            self._waiting = [r for r in self._waiting if r() is not session]
            self._promote()

    def holds(self, session) -> bool:
        """Whether the session holds a slot now."""
        with self._lock:
            self._prune()
            return any(ref() is session for ref in self._holders)

    def position(self, session) -> int | None:
        """The session's place in the queue (1: next), or None when it is not waiting."""
        with self._lock:
            self._prune()
            self._promote()
            for place, ref in enumerate(self._waiting, start=1):
                if ref() is session:
                    return place
            return None

    def busy(self) -> int:
        """Sessions training now."""
        with self._lock:
            self._prune()
            return len(self._holders)

    def _prune(self) -> None:
        self._holders = [r for r in self._holders if r() is not None and r().holds_slot()]
        self._waiting = [r for r in self._waiting if r() is not None]

    def _promote(self) -> None:
        """Launch the first waiting sessions while slots are free (first come, first served)."""
        self._prune()
        while self._waiting and len(self._holders) < self.limit:
            ref = self._waiting.pop(0)
            session = ref()
            if session is None:
                continue
            self._holders.append(ref)
            session.launch()


_server: Scheduler | None = None
_server_lock = threading.Lock()


def server_scheduler() -> Scheduler:
    """This server's one scheduler (made on first use from the server setting; ValueError if it is bad)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = Scheduler(max_trainers())
        return _server
