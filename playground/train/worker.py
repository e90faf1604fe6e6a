"""A Train page run in its own process, so the Streamlit server's interpreter stays free for pages.

`Worker` is the parent's handle: it starts the child (multiprocessing's "forkserver" context, whose
server imports torch and lm once, child.py, so a start costs a fork, not an import; never a fork of the
threaded Streamlit server), sends it commands (pause, resume, end) and hands back what the child said. `main` is
the child: it builds a `Runner` (runner.py), then trains in batches of a fraction of a second and sends
each batch's updates through a pipe; a paused run sends its model (`Snapshot`).

The child never gets more than MAX_IN_FLIGHT batches ahead of the page that reads them (each read sends
an "ack"): a page that stopped reading (a closed or hidden tab) stops the run within two seconds; a child
that hears nothing from its page for HEARD_LIMIT_S while running pauses itself (the page shows it
stopped, and the session gives its trainer slot to the next in line meanwhile), and one paused for
PAUSED_LIMIT_S ends. It also ends when the server's end of the pipe closes (the server stopped or died).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from playground.train.modes import SettingsError
from playground.train.runner import Runner, Settings

BUDGET_S = 0.25  # a batch of steps trains this long (or its max_steps), then is sent
MAX_IN_FLIGHT = 8  # batches sent, not yet read by the page: about 2 s of training (it reads every second)
HEARD_LIMIT_S = 30.0  # a running child that has heard nothing from its page this long pauses itself
PAUSED_LIMIT_S = 30 * 60.0  # a paused child ends after this long (its model stays with the page)
PROGRESS_EVERY_S = 0.2  # a BPE training's or a download's progress, at most this often
# Trainers yield the CPU to the server (and its pages) and to every other program when both want it, and still
# get about a tenth of a core where other programs keep every core busy (see lower_priority). Linux's
# SCHED_IDLE (about 0.3%) measured no faster pages under load here (bench/bench_classroom.py, docs/app.md),
# and would all but stop a run on a busy machine.
NICENESS = 10


def _context() -> mp.context.BaseContext:
    """forkserver where the platform has it (Linux), else spawn: never fork a threaded server."""
    if "forkserver" in mp.get_all_start_methods():
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["playground.train.child"])  # torch and lm imported once; see child.py
        return context
    return mp.get_context("spawn")


CONTEXT = _context()
_warming: threading.Thread | None = None


def warm_up() -> None:
    """Start the forkserver now, in the background (the server calls this once at start-up), so the first
    learner's Start does not wait for it to import torch and lm."""
    global _warming
    if _warming is None and CONTEXT.get_start_method() == "forkserver":
        from multiprocessing import forkserver  # noqa: PLC0415

        _warming = threading.Thread(target=forkserver.ensure_running, name="forkserver-warm-up", daemon=True)
        _warming.start()


# ---------------------------------------------------------------- the child
def autogroup(pid: int | str = "self") -> str:
    """A process's scheduling group as Linux shows it ("/autogroup-7 nice 0"), or "" where none applies: not
    Linux, autogroups off, or the process in a CPU cgroup of its own (a container), where the cgroup's share
    decides and the kernel shows nothing."""
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().strip()
    except OSError:
        return ""


def lower_priority() -> None:
    """NICENESS for this process (and the threads it makes later) and for its scheduling group. Linux shares
    the CPU between sessions' groups (autogroups) before a nice value inside one counts: a worker left in the
    server's session would yield to the server but take a whole session's share from every other program,
    a browser on the same machine included. So the worker starts a session of its own and sets that
    group's nice too (raising a nice needs no privilege; the kernel refuses changes closer than 0.1 s
    apart, so it tries again). Where no autogroup applies, the process's nice is all there is."""
    os.nice(NICENESS)
    if not autogroup():
        return
    try:
        os.setsid()
    except OSError:  # already a session's or group's leader: its group may hold the server, leave it alone
        return
    for _ in range(20):
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(NICENESS))
            return
        except BlockingIOError:  # EAGAIN: another group's nice was set within the last 0.1 s
            time.sleep(0.11)
        except OSError:
            return


def main(conn: Connection, settings: Settings, text: str | None, cache_dir, threads: int, max_steps: int) -> None:
    """The child process: build the run, then train and report until it ends, is ended, or is left."""
    lower_priority()  # first: torch's threads, made later, inherit it
    torch.set_num_threads(threads)
    last_progress = [0.0]

    def progress(done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if now - last_progress[0] >= PROGRESS_EVERY_S or done >= total:
            last_progress[0] = now
            conn.send(("progress", done, total, stage))

    try:
        runner = Runner(settings, text, cache_dir, progress)
    except SettingsError as err:
        conn.send(("error", str(err)))
        return
    except OSError as err:
        conn.send(("error", f"cannot prepare the data: {err}"))
        return
    conn.send(("ready", runner.info))
    try:
        _loop(conn, runner, max_steps)
    except (BrokenPipeError, EOFError):  # the server is gone: nobody to train for
        return


def _loop(conn: Connection, runner: Runner, max_steps: int) -> None:
    running, in_flight, heard = True, 0, time.monotonic()
    while True:
        can_train = running and in_flight < MAX_IN_FLIGHT
        limit = HEARD_LIMIT_S if running else PAUSED_LIMIT_S
        wait = 0 if can_train else max(0.0, limit - (time.monotonic() - heard))
        if conn.poll(wait):
            command, *args = conn.recv()
            heard = time.monotonic()
            if command == "ack":
                in_flight -= args[0]
            elif command == "pause" and running:
                running = False
                conn.send(("paused", runner.pause(), runner.snapshot()))
            elif command == "resume":
                running = True
            elif command == "end":
                return
            continue
        if not can_train:  # nothing heard for the limit: the page is gone (closed, hidden, left)
            if not running:
                return
            running, heard = False, time.monotonic()
            conn.send(("paused", runner.pause(), runner.snapshot()))
            continue
        updates = runner.advance(BUDGET_S, max_steps)
        conn.send(("updates", updates))
        in_flight += 1
        if runner.message is not None:
            conn.send(("diverged",))
            return
        if runner.trainer.done:
            conn.send(("finished", runner.snapshot()))
            return


# ---------------------------------------------------------------- the parent's handle
class WorkerGone(RuntimeError):
    """The child ended without saying how the run ended (killed, out of memory, crashed)."""


class Worker:
    """The server's handle on one run's child process."""

    def __init__(
        self, settings: Settings, text: str | None = None, cache_dir=None, threads: int = 1, max_steps: int = 1000
    ) -> None:
        self.conn, child = CONTEXT.Pipe()
        self.process = CONTEXT.Process(
            target=sys.modules[__name__].main,  # the loaded module's: Streamlit reloads an edited module
            args=(child, settings, text, cache_dir, threads, max_steps), daemon=True,
            name="playground-trainer",
        )  # fmt: skip
        self.process.start()
        child.close()  # the child's end lives in the child: when it exits, reading here sees the end
        self.ended = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self.ended and self.process.is_alive()

    def send(self, *message) -> None:
        """A command; a child that is gone has nothing to hear (its end is reported by `messages`)."""
        if self.ended:
            return
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    def messages(self, timeout: float = 0.0) -> list[tuple]:
        """Everything the child has said, waiting up to `timeout` seconds for the first message. Raises
        WorkerGone when the child ended without a last word (its pipe closed)."""
        received: list[tuple] = []
        if self.ended:
            return received
        try:
            if not self.conn.poll(timeout):
                return received
            while True:
                received.append(self.conn.recv())
                if not self.conn.poll(0):
                    return received
        except (EOFError, ConnectionResetError, OSError):
            if received:
                return received  # the end is reported on the next read, after these are applied
            self.close()
            raise WorkerGone(self.describe_exit()) from None

    def describe_exit(self) -> str:
        """How the child ended, in words."""
        self.process.join(timeout=2)
        code = self.process.exitcode
        if code is None:
            return "it stopped answering"
        if code < 0:
            import signal  # noqa: PLC0415

            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            why = " (the system ends a process this way when memory runs out)" if name == "SIGKILL" else ""
            return f"it was killed by {name}{why}"
        return f"it exited with code {code}"

    def close(self) -> None:
        """End the child (politely, then for sure) and free the pipe; safe to call twice."""
        if self.ended:
            return
        self.ended = True
        try:
            self.conn.send(("end",))
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5.0)
        self.conn.close()
