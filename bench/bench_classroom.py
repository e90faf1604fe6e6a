"""Benchmark: the app serving a classroom. One `streamlit run` server (started here on a free port) and
Chromium sessions: how long the Graph page takes to show its SVG and the Generate page its first heatmap
(bench_pages.time_page: a fresh browser session per load) alone, then while 2 and 4 other sessions train
on the Train page (alternately Memorize sentences at 5,000 epochs and the Language model defaults with
20,000 steps, so no run ends during the measurement), then alone again. Prints each page's median and
spread, the ratio to alone, each trainer's throughput (steps per second of wall time; 0 while it waits in
the queue), and the CPU the server process used (its own, not its workers') beside the whole machine's.

    .venv/bin/python bench/bench_classroom.py [--repeats 5] [--trainers 2,4] [--max-trainers N]

--max-trainers sets the server's PLAYGROUND_MAX_TRAINERS (default: the server's own, cores - 1).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_pages import CHROMIUM, PAGES, ROOT, start_server, time_page

PROGRESS = re.compile(r"(epoch|step) (\d+) / (\d+)")
START_LABEL = {"memorize": "▶ Start", "lm": "Start"}
RESET_LABEL = {"memorize": "↺ Reset", "lm": "Reset"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds used so far by a process (user + system), or by the whole machine (pid None, all cores)."""
    if pid is None:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return (sum(fields) - fields[3] - fields[4]) / TICKS  # all but idle and iowait
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


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
    """One browser session training on the Train page, its steps counted as it goes."""

    def __init__(self, browser, url: str, mode: str, number: int) -> None:
        self.mode, self.name = mode, f"{'Memorize' if mode == 'memorize' else 'Language model'} #{number}"
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
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
        page.get_by_role("button", name=START_LABEL[mode], exact=True).click()
        self.steps = self.last = 0

    def _set(self, label: str, value: int) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        wait_idle(self.page)

    def state(self) -> tuple[str, int]:
        """('training', step), ('queued', 0) or ('finished', step), from what the page shows."""
        text = self.page.locator('[data-testid="stMain"]').inner_text()
        if "in the queue" in text:
            return "queued", 0
        found = PROGRESS.search(text)
        step = int(found.group(2)) if found else 0
        return ("finished" if "Finished at" in text else "training"), step

    def poll(self) -> str:
        """Count the steps done since the last poll (a run that finished is started again)."""
        state, step = self.state()
        self.steps += max(0, step - self.last)
        self.last = step
        if state == "finished":
            self.page.get_by_role("button", name=START_LABEL[self.mode], exact=True).click()
            self.last = 0
        return state

    def leave(self) -> None:
        """Reset the run (its worker ends) and close the tab."""
        try:
            self.page.get_by_role("button", name=RESET_LABEL[self.mode], exact=True).click(timeout=10_000)
            wait_idle(self.page)
        finally:
            self.context.close()


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):5.2f} s ({min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"


def measure(browser, url: str, server_pid: int, n_trainers: int, repeats: int) -> dict:
    """One phase: `n_trainers` learners training while each page is loaded `repeats` times."""
    learners = [Learner(browser, url, "memorize" if i % 2 == 0 else "lm", i // 2 + 1) for i in range(n_trainers)]
    deadline = time.monotonic() + 120
    while learners and time.monotonic() < deadline:  # every run has started (or queued)
        states = [learner.state() for learner in learners]
        if all(state == "queued" or step > 0 for state, step in states):
            break
        learners[0].page.wait_for_timeout(200)
    for learner in learners:
        learner.poll()
        learner.steps = 0
    wall0, server0, machine0 = time.perf_counter(), cpu_seconds(server_pid), cpu_seconds()
    times: dict[str, list[float]] = {page: [] for page in PAGES}
    queued = {learner.name: 0 for learner in learners}
    for repeat in range(repeats):
        for page in PAGES if repeat % 2 == 0 else reversed(PAGES):  # alternate which page goes first
            times[page].append(time_page(browser, url, page, PAGES[page]))
            for learner in learners:
                queued[learner.name] += learner.poll() == "queued"
    wall = time.perf_counter() - wall0
    result = {
        "times": times,
        "server_cpu": 100 * (cpu_seconds(server_pid) - server0) / wall,
        "machine_cpu": 100 * (cpu_seconds() - machine0) / wall,
        "throughput": {learner.name: learner.steps / wall for learner in learners},
        "queued": {name: polls / (2 * repeats) for name, polls in queued.items()},
    }
    for learner in learners:
        learner.leave()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed loads per page and phase (default 5)")
    parser.add_argument("--trainers", default="2,4", help="trainer sessions of the loaded phases (default 2,4)")
    parser.add_argument("--max-trainers", type=int, help="the server's PLAYGROUND_MAX_TRAINERS")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    if args.max_trainers is not None:
        os.environ["PLAYGROUND_MAX_TRAINERS"] = str(args.max_trainers)
    phases = [0, *(int(n) for n in args.trainers.split(",")), 0]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        server, url = start_server(ROOT, Path(tmp) / "server.log")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            for page in PAGES:  # warm-up: first imports, first chunks, the bundled models
                time_page(browser, url, page, PAGES[page])
            results = [(n, measure(browser, url, server.pid, n, args.repeats)) for n in phases]
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=30)
    bound = os.environ.get("PLAYGROUND_MAX_TRAINERS", f"default ({max(1, (os.cpu_count() or 1) - 1)})")
    print(f"{os.cpu_count()} cores; PLAYGROUND_MAX_TRAINERS {bound}; {args.repeats} loads per page and phase")
    alone = {page: [t for n, r in results if n == 0 for t in r["times"][page]] for page in PAGES}
    for n, result in results:
        title = "alone" if n == 0 else f"{n} training"
        for page in PAGES:
            xs = result["times"][page]
            base = statistics.median(alone[page])
            ratios = [x / base for x in xs]
            print(
                f"{title:<12} {page:<9} {spread(xs)}  x alone: median {statistics.median(ratios):.2f} "
                f"({min(ratios):.2f}-{max(ratios):.2f})"
            )
        print(f"{'':<12} server process CPU {result['server_cpu']:.0f}%, machine {result['machine_cpu']:.0f}%")
        for name, rate in result["throughput"].items():
            unit = "epochs" if name.startswith("Memorize") else "steps"
            waited = result["queued"][name]
            print(f"{'':<12} {name}: {rate:.1f} {unit}/s" + (f" (queued at {waited:.0%} of polls)" if waited else ""))


if __name__ == "__main__":
    main()
