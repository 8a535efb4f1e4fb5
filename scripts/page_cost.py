"""What one page switch costs the server when nothing else asks: one protocol session against a fresh server.

From the repository root:

    .venv/bin/python -m scripts.page_cost                          # 8 rounds of every page below
    .venv/bin/python -m scripts.page_cost --profile out.txt        # and py-spy's samples of the thread
                                                                   # holding the interpreter (--gil)

Starts `streamlit run dashboard.py` on synthetic MNIST-format data (1,000 training and 200 validation
images) with a teacher key set, as the class load test does (scripts/classload.py), opens one session that
speaks Streamlit's websocket protocol (tests/support/st_client.py), visits every page twice to warm the
caches, then switches page round after round, timing each switch from the request to its script's end.
Prints the median and the fastest switch per page. With --profile, `py-spy record --gil` samples the
server during the timed rounds (py-spy must be on the PATH or given with --py-spy) and the raw samples
go to the file named. docs/reliability.md shows a run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from convae.synthetic import make_synthetic
from tests.support.server import Server
from tests.support.st_client import Session

PAGES = ["Reconstructions", "Latent space", "Mixtures", "Latent walk", "Compare runs", "Train"]


async def measure(url: str, rounds: int, start_profile) -> dict[str, list[float]]:
    """Seconds of each page switch, per page, over `rounds` rounds after two warming ones."""
    async with Session(url, timeout_s=60) as session:
        for _ in range(2):
            for page in PAGES:
                await session.switch_page(page)
        stop_profile = start_profile()
        try:
            times: dict[str, list[float]] = {page: [] for page in PAGES}
            for _ in range(rounds):
                for page in PAGES:
                    times[page].append(await session.switch_page(page))
        finally:
            stop_profile()
    return times


def profiler(pid: int, out: Path | None, py_spy: str | None):
    """A function that starts py-spy on `pid` (when `out` is given) and returns the one that stops it."""

    def start():
        if out is None:
            return lambda: None
        cmd = [py_spy, "record", "-p", str(pid), "-r", "200", "--gil", "-f", "raw", "-o", str(out), "--nonblocking"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches

        def stop() -> None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)

        return stop

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds of every page (default 8)")
    parser.add_argument("--profile", type=Path, help="write py-spy's raw --gil samples of the timed rounds here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy executable")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.profile is not None and not args.py_spy:
        parser.error("--profile needs py-spy (pip install py-spy, or give --py-spy PATH)")
    with tempfile.TemporaryDirectory(prefix="convae-page-cost-") as tmp:
        root = Path(tmp)
        data = make_synthetic(root / "data", n_train=1000, n_val=200)
        with Server(data, root / "runs", root / "server.log", env={"CONVAE_TEACHER_KEY": "k" * 24}) as server:
            start = profiler(server.proc.pid, args.profile, args.py_spy)
            times = asyncio.run(measure(server.url, args.rounds, start))
    print(f"one session, {args.rounds} timed rounds; request to the script's end:")
    every = [t for page in PAGES for t in times[page]]
    for name, values in [*times.items(), ("every page", every)]:
        ms = sorted(v * 1e3 for v in values)
        print(f"{name:16s} median {statistics.median(ms):5.0f} ms, fastest {ms[0]:5.0f} ms, slowest {ms[-1]:5.0f} ms")
    if args.profile is not None:
        print(f"py-spy's samples (--gil, 200 a second): {args.profile}")


if __name__ == "__main__":
    main()
