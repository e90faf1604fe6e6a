"""Benchmark: the app serving a classroom. One `streamlit run` server (started here on a free port) and
Chromium sessions: how long the Graph page takes to show its SVG and the Generate page its first heatmap
(bench_pages.time_visit: by default a first visit, a fresh browser context per load; `--visit` as in
bench_pages, each kind timed in the same alternation) while 2, then 4, other sessions train on the
Train page (alternately Memorize sentences at 5,000 epochs and the Language model defaults with 20,000
steps; a run that ends, Memorize's in about 20 s, is started again), against the same pages while those
runs are paused: the two sides alternate repeat by repeat, so both see the same machine (shared: other
work comes and goes).
Times are the browser's own clock, from navigation (or the click) to the frame that shows the drawing
(bench_pages.WATCH). Prints each page's median and spread on both sides and the ratio loaded / alone of
each repeat, each trainer's throughput (steps per second of loaded wall time; 0 while it waits in the
queue), and the CPU used by the server process itself, by its training workers, by this script's
Chromium, and by the whole machine, on each side.

    .venv/bin/python -m bench.bench_classroom [--repeats 5] [--trainers 2,4] [--max-trainers N] [--learners-elsewhere]
        [--visit first,return,switch]

--max-trainers sets the server's PLAYGROUND_MAX_TRAINERS (default: the server's own, cores - 1).
--learners-elsewhere puts the training learners' tabs in a second Chromium run at the lowest priority: in a
classroom their browsers run on their own laptops, and here their live charts would otherwise take the cores
the timed page needs (the server still does each of their reruns). Lowest means SCHED_IDLE inside its own
scheduling group at nice 19: Playwright starts each browser in a new session, and Linux's autogroups share
the CPU between sessions before any priority inside one counts, so SCHED_IDLE alone would still get a
session's full share against the timed page's Chromium.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from bench.bench_pages import CHROMIUM, PAGES, ROOT, VIEWPORT, VISITS, start_server, time_page, time_visit, visit_pairs

PROGRESS = re.compile(r"(epoch|step) (\d+) / (\d+)")
START_LABEL = {"memorize": "▶ Start", "lm": "Start"}
STOP_LABEL = {"memorize": "■ Stop", "lm": "Stop"}
RESUME_LABEL = {"memorize": "▶ Resume", "lm": "Resume"}
RESET_LABEL = {"memorize": "↺ Reset", "lm": "Reset"}
SIDES = ("alone", "loaded")
LOAD_TIMEOUT_S = 90  # a load that takes longer is counted as this (and reported)
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> tuple[int, float, float] | None:
    """(parent pid, CPU seconds of the process: user + system, CPU seconds of its children that have ended
    and were waited for) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS, (int(fields[13]) + int(fields[14])) / TICKS


def machine_cpu() -> float:
    """CPU seconds the whole machine has used (all cores, all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


def cpu_by_part(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the server process, its descendants (the forkserver and the training workers,
    those that have ended too: a process's waited-for children count in it; so do the server's own ended
    children, its `dot` layouts), this script's other descendants (Chromium and Playwright's driver), and
    the machine."""
    stats = {int(pid): stat for pid in os.listdir("/proc") if pid.isdigit() and (stat := _stat(pid))}

    def below(root: int) -> set[int]:
        found, frontier = set(), {root}
        while frontier:
            frontier = {pid for pid, (parent, _, _) in stats.items() if parent in frontier} - found
            found |= frontier
        return found

    def total(pids: set[int]) -> float:
        return sum(stats[pid][1] + stats[pid][2] for pid in pids)

    workers = below(server_pid)
    browser = below(os.getpid()) - workers - {server_pid}
    _, server_own, server_children = stats.get(server_pid, (0, 0.0, 0.0))
    return {
        "server": server_own,
        "workers": total(workers) + server_children,
        "browser": total(browser),
        "machine": machine_cpu(),
    }


def wait_idle(page, timeout_s: float = 60) -> None:
    """Until Streamlit's 'running' widget has stayed away a moment (as tests/e2e/conftest.py waits)."""
    running = page.locator('[data-testid="stStatusWidget"]')
    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if running.count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.6:
            return
        page.wait_for_timeout(100)


class Learner:
    """One browser session training on the Train page, its steps counted while it trains."""

    def __init__(self, browser, url: str, mode: str, number: int) -> None:
        self.mode, self.name = mode, f"{'Memorize' if mode == 'memorize' else 'Language model'} #{number}"
        self.unit = "epochs" if mode == "memorize" else "steps"
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = page = self.context.new_page()
        page.goto(f"{url}/train")
        page.wait_for_selector('[data-testid="stMain"] h1', timeout=90_000)
        wait_idle(page)
        if mode == "lm":
            page.locator('[data-testid="stButtonGroup"]').get_by_text("Language model").click()
            wait_idle(page)
            self._set("Steps", 20_000)
        else:
            self._set("Epochs", 5_000)
        self._click(START_LABEL[mode])
        self.steps = self.last = self.restarts = 0

    def _set(self, label: str, value: int) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        wait_idle(self.page)

    def _click(self, label: str) -> None:
        self.page.get_by_role("button", name=label, exact=True).click(timeout=60_000)

    def state(self) -> tuple[str, int]:
        """('queued', 0) or (what the page says, step): 'finished', 'stopped' or 'training'."""
        try:
            text = self.page.locator('[data-testid="stMain"]').inner_text(timeout=120_000)
        except PlaywrightError:  # the page is being redrawn (a loaded machine can take long): ask again later
            return "unknown", self.last
        if "in the queue" in text:
            return "queued", 0
        found = PROGRESS.search(text)
        if found is None:
            return "idle", 0
        step = int(found.group(2))
        return ("finished" if "Finished at" in text else "stopped" if "Stopped at" in text else "training"), step

    def wait_for(self, condition, what: str, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(*self.state()):
            if time.monotonic() > deadline:
                self.page.screenshot(path=f"/tmp/classroom-{self.mode}.png", full_page=True)
                raise TimeoutError(f"{self.name}: {what} did not happen within {timeout_s} s")
            self.page.wait_for_timeout(200)

    def poll(self, restart: bool = True) -> str:
        """Count the steps done since the last poll (a run that finished is started again, if `restart`)."""
        state, step = self.state()
        if state in ("unknown", "queued"):  # a queued page shows no step: keep the last one seen
            return state
        self.steps += max(0, step - self.last)
        self.last = step
        if state == "finished" and restart:
            self._click(START_LABEL[self.mode])
            self.last = 0
        return state

    def pause(self) -> None:
        if self.poll(restart=False) in ("finished", "idle"):
            return  # nothing to pause: Resume starts it again
        self._click(STOP_LABEL[self.mode])
        self.wait_for(lambda state, step: state in ("stopped", "finished", "idle"), "Stop")
        self.poll(restart=False)

    def resume(self) -> None:
        """Resume the paused run; one that ended or is gone (idle: counted in `restarts`) starts again."""
        resume = self.page.get_by_role("button", name=RESUME_LABEL[self.mode], exact=True)
        if resume.count() and resume.is_enabled():
            resume.click()
            return
        self.restarts += self.state()[0] == "idle"
        self.last = 0
        self._click(START_LABEL[self.mode])

    def leave(self) -> None:
        """Reset the run (its worker ends) and close the tab."""
        try:
            reset = self.page.get_by_role("button", name=RESET_LABEL[self.mode], exact=True)
            if reset.is_enabled():
                reset.click()
                wait_idle(self.page)
        finally:
            self.context.close()


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):5.2f} s ({min(xs):.2f}-{max(xs):.2f})"


def measure(
    browser, url: str, server_pid: int, n_trainers: int, repeats: int, learners_browser=None, visits=("first",)
) -> dict:
    """One phase: `n_trainers` learners, whose runs are paused (alone) or going (loaded) in alternation,
    while each page is visited (`visits`: bench_pages' first, return or switch) `repeats` times on each side;
    results are keyed "visit page". The learners' tabs are in `learners_browser` (default: the same browser
    as the timed pages)."""
    timed = visit_pairs(visits, list(PAGES))
    kept = browser.new_context(viewport=VIEWPORT)  # return and switch visits reuse it (its cache is warm)
    for visit, page in timed:
        time_visit(browser, kept, url, page, visit)
    learners = []
    for i in range(n_trainers):  # each run started, trained a step, then paused: every learner has a run
        learner = Learner(learners_browser or browser, url, "memorize" if i % 2 == 0 else "lm", i // 2 + 1)
        learner.wait_for(lambda state, step: step > 0, "a first step")
        learner.pause()
        learners.append(learner)
    times = {side: {f"{v} {p}": [] for v, p in timed} for side in SIDES}
    cpu = {side: dict.fromkeys(("server", "workers", "browser", "machine", "wall"), 0.0) for side in SIDES}
    queued = {learner.name: 0 for learner in learners}
    timeouts = dict.fromkeys(SIDES, 0)
    for learner in learners:
        learner.steps = 0
    for repeat in range(repeats):
        for side in SIDES if repeat % 2 == 0 else reversed(SIDES):  # alternate which side goes first
            if side == "loaded":
                for learner in learners:
                    learner.resume()
                for learner in learners:  # going again, or waiting its turn
                    learner.wait_for(lambda state, step: state in ("training", "queued", "finished"), "Resume")
            before, wall = cpu_by_part(server_pid), time.perf_counter()
            for visit, page in timed if repeat % 2 == 0 else reversed(timed):
                try:
                    seconds = time_visit(browser, kept, url, page, visit, timeout_s=LOAD_TIMEOUT_S).seconds
                except PlaywrightError:  # counted as the limit, and said
                    seconds = LOAD_TIMEOUT_S
                    timeouts[side] += 1
                times[side][f"{visit} {page}"].append(seconds)
                states = [learner.state()[0] for learner in learners] if side == "loaded" else []
                print(f"  {n_trainers} trainers, {side}, {visit} {page}: {seconds:.2f} s {states}", flush=True)
                if side == "loaded":
                    for learner in learners:
                        queued[learner.name] += learner.poll() == "queued"
            after = cpu_by_part(server_pid)
            for part in after:
                cpu[side][part] += after[part] - before[part]
            cpu[side]["wall"] += time.perf_counter() - wall
            if side == "loaded":
                for learner in learners:
                    learner.pause()
    result = {
        "times": times,
        "cpu": {
            side: {part: 100 * v / c["wall"] for part, v in c.items() if part != "wall"} for side, c in cpu.items()
        },
        "throughput": {learner.name: (learner.steps / cpu["loaded"]["wall"], learner.unit) for learner in learners},
        "queued": {name: polls / (len(timed) * repeats) for name, polls in queued.items()},
        "restarts": {learner.name: learner.restarts for learner in learners},
        "timeouts": timeouts,
    }
    for learner in learners:
        learner.leave()
    kept.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed loads per page and phase (default 5)")
    parser.add_argument("--trainers", default="2,4", help="trainer sessions of the loaded phases (default 2,4)")
    parser.add_argument("--max-trainers", type=int, help="the server's PLAYGROUND_MAX_TRAINERS")
    parser.add_argument(
        "--learners-elsewhere",
        action="store_true",
        help="the training learners' tabs in a second Chromium at the lowest priority, as if on their own "
        "laptops: only the server and its workers share the machine with the timed pages",
    )
    parser.add_argument(
        "--visit",
        default="first",
        help=f"how the timed pages are visited, comma-separated, of {', '.join(VISITS)} (bench_pages; default first)",
    )
    args = parser.parse_args()
    visits = args.visit.split(",")
    if unknown := [v for v in visits if v not in VISITS]:
        parser.error(f"--visit: unknown {', '.join(unknown)}; choose from {', '.join(VISITS)}")

    os.environ["STREAMLIT_SERVER_FILE_WATCHER_TYPE"] = "none"  # the app as served, not reloaded on an edit
    if args.max_trainers is not None:
        os.environ["PLAYGROUND_MAX_TRAINERS"] = str(args.max_trainers)
    phases = [int(n) for n in args.trainers.split(",")]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        server, url = start_server(ROOT, Path(tmp) / "server.log")
        flags = ["--headless", "--no-sandbox", "--disable-gpu"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        learners_browser = None
        if args.learners_elsewhere:  # its session's autogroup at nice 19, then SCHED_IDLE for all it starts
            idle = Path(tmp) / "chromium-idle"
            lowest = "echo 19 > /proc/self/autogroup 2>/dev/null"  # no autogroups (or no right to): SCHED_IDLE only
            idle.write_text(f'#!/bin/sh\n{lowest}\nexec chrt --idle 0 {CHROMIUM} "$@"\n')
            idle.chmod(0o755)
            learners_browser = p.chromium.launch(executable_path=str(idle), args=flags)
        try:
            for page in PAGES:  # warm-up: first imports, first chunks, the bundled models
                time_page(browser, url, page, PAGES[page])
            results = [
                (n, measure(browser, url, server.pid, n, args.repeats, learners_browser, visits)) for n in phases
            ]
        finally:
            if learners_browser is not None:
                learners_browser.close()
            browser.close()
            server.terminate()
            server.wait(timeout=30)
    bound = os.environ.get("PLAYGROUND_MAX_TRAINERS", f"default ({max(1, (os.cpu_count() or 1) - 1)})")
    where = "their own Chromium at idle priority" if args.learners_elsewhere else "the timed pages' Chromium"
    print(f"{os.cpu_count()} cores; PLAYGROUND_MAX_TRAINERS {bound}; {args.repeats} loads per page and side")
    print(f"the training learners' tabs: in {where}; the timed pages: {args.visit} visits")
    for n, result in results:
        print(f"-- {n} other sessions training (loaded) or paused (alone)")
        for timed in result["times"]["alone"]:
            alone, loaded = result["times"]["alone"][timed], result["times"]["loaded"][timed]
            ratios = [b / a for a, b in zip(alone, loaded)]
            print(
                f"{timed:<16} alone {spread(alone)}  loaded {spread(loaded)}  loaded / alone: median "
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
        if any(result["timeouts"].values()):
            print(f"loads past {LOAD_TIMEOUT_S} s (counted as {LOAD_TIMEOUT_S} s): {result['timeouts']}")
        for side in SIDES:
            c = result["cpu"][side]
            print(
                f"CPU {side:<6}: server process {c['server']:.0f}%, its workers {c['workers']:.0f}%, "
                f"Chromium {c['browser']:.0f}%, machine {c['machine']:.0f}% (of {100 * (os.cpu_count() or 1)}%)"
            )
        for name, (rate, unit) in result["throughput"].items():
            waited = result["queued"][name]
            restarts = result["restarts"][name]
            print(
                f"{name}: {rate:.1f} {unit}/s"
                + (f" (queued at {waited:.0%} of polls)" if waited else "")
                + (f" (its run was gone after a pause {restarts} time(s): started again)" if restarts else "")
            )


if __name__ == "__main__":
    main()
