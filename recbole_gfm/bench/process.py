"""The benchmark's side of its child processes: started tied to it, shown, logged, stopped together.

Each cell or trial runs in ``python -m recbole_gfm.bench.child`` (:mod:`recbole_gfm.bench.child`).
A child dies with the benchmark, even after ``kill -9`` of it (Linux: ``PR_SET_PDEATHSIG``); its
whole output goes to its log file, and its progress lines (one per validation) and, every
``BAR_EVERY_S``, its progress bar are shown.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
from typing import Callable

from recbole_gfm.bench.child import PROGRESS, Job
from recbole_gfm.run.launch import die_with_parent

_BAR = re.compile(r"\d+/\d+ \[")  # a tqdm bar (shown when the run's show_progress is on)
BAR_EVERY_S = 10.0
def pump(stream, log, show: Callable[[str], None]) -> None:
    """Copy a child's output to its ``log``; ``show`` its progress lines and, every BAR_EVERY_S, a progress bar."""
    pending, last_bar = b"", -math.inf
    while chunk := stream.read1(1 << 16):
        log.write(chunk)
        log.flush()
        *segments, pending = re.split(rb"[\r\n]", pending + chunk)
        for segment in segments:
            text = segment.decode(errors="replace").strip()
            if text.startswith(PROGRESS):
                show(text[len(PROGRESS) :].strip())
            elif _BAR.search(text) and time.monotonic() - last_bar >= BAR_EVERY_S:
                show(text)
                last_bar = time.monotonic()


def _child_env() -> dict[str, str]:
    """The child imports this very recbole_gfm (whose code the cells record), whatever its cwd."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def last_line(log_path: str) -> str:
    """The last non-empty line of a child's log (what a failed child said last)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 4096))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


class Children:
    """The running child processes of one benchmark run; :meth:`stop` kills every one of them.

    Once stopping, a child started afterwards is killed at once (a cell queued behind the stop
    never trains).
    """

    def __init__(self) -> None:
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self, job: Job, log_path: str, show: Callable[[str], None]) -> int:
        """Run ``job`` in a child process that dies with this one; returns its exit code (negative: killed by that signal)."""
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        parent = os.getpid()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "recbole_gfm.bench.child", job.to_json()],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=lambda: die_with_parent(parent), env=_child_env(),
            )  # fmt: skip
            with self._lock:
                self._running.add(proc)
                if self.stopping.is_set():
                    proc.kill()
            try:
                pump(proc.stdout, log, show)
                return proc.wait()
            except BaseException:  # Ctrl-C or SIGTERM of the benchmark: do not leave the child running
                proc.kill()
                proc.wait()
                raise
            finally:
                with self._lock:
                    self._running.discard(proc)

    def stop(self) -> None:
        """Kill every running child: a cell keeps the snapshot of its last validation and resumes from it next time."""
        with self._lock:
            self.stopping.set()
            for proc in self._running:
                proc.kill()


def cell_threads(jobs: int) -> int | None:
    """Torch threads per child when ``jobs`` cells share this machine's cores (None: torch's default)."""
    if jobs == 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)
