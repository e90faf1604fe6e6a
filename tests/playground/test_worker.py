"""Tests of the Train page's worker processes and their scheduler (playground/train/worker.py and
scheduler.py, through logic.py's TrainingSession): a worker's updates equal an in-process run's (same
seed, the same losses, exactly), across pauses too; a killed worker is a message on the session and on
the page, never a dead server; the queue starts the next run when a slot frees, first come first served,
and a page that stops reading gives its slot on; ending a session (closed, collected) ends its worker;
the server setting is validated; AppTest shows a queued learner their place.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from apptest_helpers import WAIT_S, open_page, wait_for
from streamlit.testing.v1 import AppTest

from playground.common.markdown import shown
from playground.train import scheduler
from playground.train.logic import Run, TrainingSession
from playground.train.modes import LanguageModelSettings, MemorizeSettings
from playground.train.runner import Runner
from playground.train.scheduler import Scheduler, cores, max_trainers, threads_per_trainer
from playground.train.worker import NICENESS, autogroup

SMALL = MemorizeSettings(d_model=16, d_ff=32, epochs=120)
LONG = replace(SMALL, epochs=5000)  # still training when a test pauses, kills or queues behind it
TEXT = LanguageModelSettings(n_layers=1, d_model=32, context=16, batch_size=4, steps=12, eval_every=4, sample_every=6)


def gone(pid: int) -> bool:
    """The process has ended and been reaped (no zombie left either)."""
    return not Path(f"/proc/{pid}").exists()


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while not gone(pid):
        assert time.monotonic() < deadline, f"worker {pid} still exists after {WAIT_S} s"
        time.sleep(0.05)  # polling the process table for the condition itself


def in_process(settings, pauses: int = 0, cache_dir=None) -> Run:
    """The run trained here with the worker's torch threads, recorded as the session records a worker's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_trainer(1))
    try:
        runner = Runner(settings, cache_dir=cache_dir)
        run = Run(1, settings, n_sentences=runner.info.n_sentences)
        while not runner.over:
            for update in runner.advance(budget_s=1.0):
                run.apply(update)
        return run
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("settings", [SMALL, TEXT], ids=["memorize", "language-model"])
def test_a_workers_updates_equal_an_in_process_runs(settings, tmp_path) -> None:
    session = TrainingSession(Scheduler(1))
    session.start(settings, cache_dir=tmp_path)
    wait_for(session, lambda: not session.running, "the run ending")
    assert session.status == "finished"
    ours, here = session.run, in_process(settings, cache_dir=tmp_path)
    assert ours.steps == here.steps == list(range(1, settings.planned + 1))
    assert ours.losses == here.losses and ours.grad_norms == here.grad_norms and ours.lrs == here.lrs  # exact
    assert (ours.mem_steps, ours.mem_scores, ours.first_full_step) == (here.mem_steps, here.mem_scores,
                                                                      here.first_full_step)  # fmt: skip
    assert (ours.val_steps, ours.val_losses, ours.samples) == (here.val_steps, here.val_losses, here.samples)
    assert ours.losses[-1] < ours.losses[0]


def test_pause_and_resume_across_the_process_boundary_lose_nothing() -> None:
    """Paused twice and resumed: the same losses as a run never paused (the worker keeps its Trainer)."""
    settings = replace(SMALL, epochs=300)
    session = TrainingSession(Scheduler(1))
    session.start(settings)
    for _ in range(2):
        wait_for(session, lambda: session.step >= 1, "a step")
        session.stop()
        stopped_at = session.step
        assert session.status == "stopped" and session.advance(wait_s=0.3) == [] and session.step == stopped_at
        assert session.trained_model is not None and session.run.mem_steps[-1] == stopped_at  # scored on stop
        session.resume()
        assert session.status == "running"
    wait_for(session, lambda: not session.running, "the run ending")
    assert session.status == "finished" and session.run.losses == in_process(settings).losses


ROOT = Path(__file__).resolve().parents[2]


def python_in_project(code: str) -> str:
    """What `code` prints, run by a fresh interpreter in the project's root (a process of its own: these
    tests change what it imported, its niceness or its scheduling group)."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


FIRST_BATCH = """
import sys
import playground.train.child  # the forkserver's preload: what every worker starts with
from playground.train.modes import MemorizeSettings
from playground.train.runner import Runner
before = set(sys.modules)
runner = Runner(MemorizeSettings(d_model=16, d_ff=32, epochs=50), None, None, lambda *args: None)
runner.advance(0.2, 50)
print(sorted(name for name in set(sys.modules) - before if name.startswith("torch")))
"""


def test_a_workers_first_batch_imports_nothing_of_torch_the_forkserver_did_not() -> None:
    """torch imports torch._dynamo (~1.2 s) at the first meta-tensor op with a Python decomposition, which
    autodiff's shape inference runs: child.py imports it once for every fork, so no Start waits for it."""
    printed = python_in_project(FIRST_BATCH)
    assert printed.strip().splitlines()[-1] == "[]", printed


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads a process's threads from /proc")
def test_a_worker_yields_the_cpu_in_every_thread_and_in_its_scheduling_group() -> None:
    session = TrainingSession(Scheduler(1))
    session.start(LONG)
    wait_for(session, lambda: session.step >= 1, "a first epoch")
    threads = [int(tid) for tid in os.listdir(f"/proc/{session.worker.pid}/task")]  # torch's pool included
    base = os.getpriority(os.PRIO_PROCESS, 0)  # the server's (this test's) own niceness
    assert threads and all(os.getpriority(os.PRIO_PROCESS, tid) == min(19, base + NICENESS) for tid in threads)
    if autogroup():  # and its own scheduling group, at that nice too ("/autogroup-7 nice 10")
        ours, group = autogroup().split(), autogroup(session.worker.pid).split()
        assert group[0] != ours[0] and group[-1] == str(NICENESS), (group, ours)
    session.close()


NO_OWN_SESSION = """
import os
from playground.train import worker
def refused():
    raise PermissionError("already a process group leader")
os.setsid = refused
before = open("/proc/self/autogroup").read()
worker.lower_priority()
print(before == open("/proc/self/autogroup").read(), os.getpriority(os.PRIO_PROCESS, 0))
"""


@pytest.mark.skipif(not autogroup(), reason="no autogroup applies here (not Linux, or a CPU cgroup of its own)")
def test_a_worker_that_cannot_start_its_own_session_leaves_the_shared_group_alone() -> None:
    """Its scheduling group may be the server's: setting that group's nice would slow the server too."""
    unchanged, nice = python_in_project(NO_OWN_SESSION).split()
    assert unchanged == "True" and int(nice) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)


NO_AUTOGROUP = """
import os
from playground.train import worker
def unexpected():
    raise AssertionError("a session of its own, where no autogroup applies")
os.setsid = unexpected
worker.autogroup = lambda pid="self": ""  # as in a container: /proc/self/autogroup exists and reads empty
worker.lower_priority()
print(os.getpriority(os.PRIO_PROCESS, 0))
"""


def test_where_no_autogroup_applies_a_worker_only_lowers_its_nice() -> None:
    """A container's cgroup shares the CPU there; the worker neither starts a session nor writes a group."""
    assert int(python_in_project(NO_AUTOGROUP)) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)


def test_killing_a_worker_is_a_message_and_the_session_goes_on() -> None:
    session = TrainingSession(Scheduler(1))
    session.start(LONG)
    wait_for(session, lambda: session.step >= 1, "a first epoch")
    pid = session.worker.pid
    os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    wait_for(session, lambda: session.status == "failed", "the session noticing")
    assert "ended unexpectedly: it was killed by SIGKILL" in session.message and "memory runs out" in session.message
    assert session.worker is None and not session.running and session.trained_model is None and gone(pid)
    assert session.run.losses  # what it sent before stays on the page
    session.start(replace(SMALL, epochs=5))  # this process is fine: the next run trains
    wait_for(session, lambda: not session.running, "the next run ending")
    assert session.status == "finished"


def test_the_queue_starts_the_next_run_when_a_slot_frees_first_come_first_served() -> None:
    one = Scheduler(1)
    a, b, c = (TrainingSession(one) for _ in range(3))
    a.start(LONG)
    b.start(LONG)
    c.start(LONG)
    assert (a.status, b.status, c.status) == ("running", "queued", "queued") and b.worker is c.worker is None
    assert (b.queue_position(), c.queue_position()) == (1, 2) and b.running  # Start stays disabled while queued
    wait_for(a, lambda: a.step >= 1, "a's first epoch")
    a.stop()  # its slot goes to b, the first in line
    assert b.status == "running" and c.queue_position() == 1
    wait_for(b, lambda: b.step >= 1, "b training")
    paused_at = a.step
    a.resume()  # a waits behind c
    assert a.status == "queued" and a.queue_position() == 2
    b.reset()
    assert c.status == "running" and a.queue_position() == 1
    wait_for(c, lambda: c.step >= 1, "c training")
    assert sum(s.holds_slot() for s in (a, b, c)) == 1  # never more than the bound
    c.stop()
    assert a.status == "running"  # the paused run goes on in its own worker
    wait_for(a, lambda: a.step > paused_at, "a training on")
    for session in (a, b, c):
        session.reset()
    assert one.busy() == 0


def test_stop_leaves_the_queue() -> None:
    one = Scheduler(1)
    a, b = TrainingSession(one), TrainingSession(one)
    a.start(LONG)
    b.start(LONG)
    b.stop()
    assert b.status == "idle" and b.queue_position() is None and b.run is None
    a.reset()


def test_ending_a_session_ends_its_worker() -> None:
    one = Scheduler(1)
    session = TrainingSession(one)
    session.start(LONG)
    wait_for(session, lambda: session.step >= 1, "a first epoch")
    pid = session.worker.pid
    session.close()  # what Streamlit's end of a browser session comes to
    assert gone(pid)
    running = TrainingSession(one)
    running.start(LONG)  # the slot was given back
    assert running.status == "running"
    pid = running.worker.pid
    del running  # a browser session that ended: its state is collected, its worker ends with it
    gc.collect()
    wait_gone(pid)
    paused = TrainingSession(one)
    paused.start(LONG)
    paused.stop()
    pid = paused.worker.pid
    del paused
    gc.collect()
    wait_gone(pid)
    assert one.busy() == 0


def test_a_session_that_is_gone_gives_its_slot_back() -> None:
    one = Scheduler(1)
    holder = TrainingSession(one)
    holder.start(LONG)
    pid = holder.worker.pid
    del holder  # not yet collected: the scheduler collects before it queues anyone
    waiting = TrainingSession(one)
    waiting.start(LONG)
    assert waiting.status == "running"
    wait_gone(pid)
    waiting.reset()


def test_a_page_that_stops_reading_gives_its_slot_to_the_next_and_queues_to_go_on(monkeypatch) -> None:
    """A closed or hidden tab reads nothing: after HEARD_LIMIT_S its slot goes to the next in line (its
    worker pauses itself, worker.py); when the page reads again, its run queues to go on."""
    monkeypatch.setattr("playground.train.logic.HEARD_LIMIT_S", 3.0)  # the server's side of the limit
    one = Scheduler(1)
    unread, waiting = TrainingSession(one), TrainingSession(one)
    unread.start(LONG)
    wait_for(unread, lambda: unread.step >= 1, "a first epoch")
    waiting.start(LONG)
    assert waiting.status == "queued"
    deadline = time.monotonic() + WAIT_S
    while waiting.status == "queued":  # nobody reads `unread` now
        assert time.monotonic() < deadline, "the slot was not given on"
        waiting.advance(wait_s=0.1)
    assert waiting.status == "running" and not unread.holds_slot()
    monkeypatch.setattr("playground.train.logic.HEARD_LIMIT_S", 3600.0)  # `waiting` is not read below either
    unread.advance()  # its page reads again: paused, and queued behind the run that took its slot
    assert unread.status == "queued" and unread.queue_position() == 1 and unread.trained_model is None
    waiting.reset()
    assert unread.status == "running"
    stopped_at = unread.step
    wait_for(unread, lambda: unread.step > stopped_at, "the run going on")
    unread.reset()


def test_the_server_setting_is_validated() -> None:
    assert max_trainers({}) == max(1, cores() - 1)
    assert max_trainers({"PLAYGROUND_MAX_TRAINERS": " 3 "}) == 3
    for bad in ("0", "-1", "two", "1.5", "257"):
        with pytest.raises(ValueError, match=rf"PLAYGROUND_MAX_TRAINERS='{bad}' must be a whole number from 1 to 256"):
            max_trainers({"PLAYGROUND_MAX_TRAINERS": bad})
    assert threads_per_trainer(1) == max(1, cores() - 1) and threads_per_trainer(10_000) == 1


# ---------------------------------------------------------------- the page (AppTest)


def run_until(at: AppTest, condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_S} s"
        at.run()


def small_page() -> AppTest:
    at = open_page("train")
    at.number_input(key="train_d_model").set_value(16).run()
    return at.number_input(key="train_d_ff").set_value(32).run()


def test_a_queued_learner_sees_their_place_and_the_run_starts_by_itself(monkeypatch) -> None:
    monkeypatch.setattr(scheduler, "_server", Scheduler(1))  # this server trains one run at a time
    other = TrainingSession()  # another learner's run holds the one trainer
    other.start(LONG)
    at = small_page()
    at.number_input(key="train_epochs").set_value(5000).run()
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("number 1** in the queue" in i.value for i in at.info)
    assert at.button(key="train_start").disabled and not at.button(key="train_stop").disabled
    session = at.session_state["train_session"]
    other.stop()  # a slot frees: the queued run starts without anyone pressing anything
    run_until(at, lambda: session.step > 0, "the queued run training")
    assert not any("in the queue" in i.value for i in at.info)
    session.reset()
    other.reset()


def test_a_killed_worker_is_a_message_on_the_page() -> None:
    at = small_page()
    at.number_input(key="train_epochs").set_value(5000).run()
    at.button(key="train_start").click().run()
    session = at.session_state["train_session"]
    run_until(at, lambda: session.step > 0, "a first epoch")
    os.kill(session.worker.pid, signal.SIGKILL)
    run_until(at, lambda: bool(at.error), "the message")
    assert not at.exception and "ended unexpectedly: it was killed by SIGKILL" in shown(at.error[0].value)
    assert not at.button(key="train_start").disabled  # Start again


def test_a_bad_server_setting_is_a_message(monkeypatch) -> None:
    monkeypatch.setattr(scheduler, "_server", None)
    monkeypatch.setenv("PLAYGROUND_MAX_TRAINERS", "all")
    at = small_page()
    at.button(key="train_start").click().run()
    assert not at.exception and "PLAYGROUND_MAX_TRAINERS='all' must be a whole number" in shown(at.error[0].value)
