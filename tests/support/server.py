"""`streamlit run dashboard.py` on a free localhost port, for the browser tests and scripts.

The server gets its own data and runs folders (CONVAE_DATA_DIR, CONVAE_RUNS_DIR); its output goes to
a log file; a thread samples its memory and CPU time while it runs.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parents[2]
LOG_PROBLEM = re.compile(r"Traceback|Exception|\bERROR\b|Error:")


class Server:
    """`streamlit run SCRIPT` on a free localhost port, as a context manager; its output goes to a log file."""

    def __init__(
        self,
        data_dir: Path,
        runs_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        script: str = "dashboard.py",
        cwd: Path = PROJECT,
        launcher: tuple[str, ...] | None = None,
    ) -> None:
        self.data_dir, self.runs_dir, self.log_path = data_dir, runs_dir, log_path
        self.script, self.cwd = script, cwd
        self.launcher = launcher or ("-m", "streamlit", "run", script)  # ("-m", "ui.serve"): what `make run` starts
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.peak_rss = 0
        self.rss_samples: list[tuple[float, int]] = []
        self._sampling = threading.Event()
        self.cpu_seen: dict[int, tuple[bool, float]] = {}

    def __enter__(self) -> Server:
        env = {
            **os.environ,
            "CONVAE_DATA_DIR": str(self.data_dir),
            "CONVAE_RUNS_DIR": str(self.runs_dir),
            **self.extra_env,
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *self.launcher,
                "--server.port",
                str(self.port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=self.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within 60 s; see {self.log_path}")
            time.sleep(0.25)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        proc = psutil.Process(self.proc.pid)
        t0 = time.monotonic()
        while not self._sampling.is_set():
            rss = self.rss()
            self.peak_rss = max(self.peak_rss, rss)
            self.rss_samples.append((time.monotonic() - t0, rss))
            self._count_cpu()
            if not proc.is_running():
                return
            self._sampling.wait(0.2)

    def _count_cpu(self) -> None:
        """Latest CPU seconds of the server's processes and of this process's other children (the
        browser), per process, so that processes that have ended still count."""
        try:
            server = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
            mine = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        server_pids = {p.pid for p in server}
        for p in mine:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            self.cpu_seen[p.pid] = (p.pid in server_pids, t.user + t.system)  # ended children are counted once

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by the server and by the browser (and its driver)."""
        server = sum(s for is_server, s in self.cpu_seen.values() if is_server)
        return server, sum(s for is_server, s in self.cpu_seen.values() if not is_server)

    def rss(self) -> int:
        """Resident memory of the server process and its children, in bytes."""
        try:
            proc = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            return 0

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        self._sampling.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_problems(log: str) -> tuple[list[str], int]:
    """Lines of a server log that show an error, and how many tracebacks were Streamlit's own
    websocket-close noise (starlette's WebSocketDisconnected when a tab goes away mid-message)."""
    blocks = re.split(r"\n(?=\S)", log)  # a traceback's lines are indented, except its first and last
    problems, noise = [], 0
    in_asgi_noise = False  # inside "Exception in ASGI application" and its chained tracebacks
    for i, block in enumerate(blocks):
        if block.startswith("Exception in ASGI application"):
            group = [block]
            for later in blocks[i + 1 :]:
                if later.startswith("Exception in ASGI application") or re.match(r"\d{4}-\d\d-\d\d ", later):
                    break
                group.append(later)
            text = "\n".join(group)
            in_asgi_noise = "WebSocketDisconnected" in text and "starlette" in text
            if in_asgi_noise:
                noise += 1
                continue
        elif re.match(r"\d{4}-\d\d-\d\d ", block):
            in_asgi_noise = False
        if in_asgi_noise or not LOG_PROBLEM.search(block):
            continue
        if "WebSocketDisconnected" in block and "starlette" in "".join(blocks[max(0, i - 3) : i + 3]):
            noise += 1
            continue
        problems.append(block.strip().splitlines()[0])
    return problems, noise
