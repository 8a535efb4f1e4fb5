"""What `python -m convae train` pays around its training: seconds from the process's start to its
first step, and from its last epoch's validation to its exit (checkpoint, class means, figures).

    .venv/bin/python -m scripts.cli_toll                  # 3 runs of 100 steps each, on MNIST in data/

It reads the command's progress output as it comes: the bar's first count above 0 marks the first step,
the last "epoch N:" line the end of the training.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

STEP = re.compile(rb"\b([1-9]\d*)/(\d+) \[")


def one_run(steps: int, threads: int) -> tuple[float, float, float]:
    """(seconds before the first step, seconds of training, seconds after the last epoch) of one process."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "convae", "train", "--epochs", "1", "--train-size", str(32 * steps)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        proc = subprocess.Popen([*cmd, "--out", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        first = last = None
        seen = b""
        while chunk := proc.stdout.read1(4096):
            now = time.perf_counter()
            seen += chunk
            if first is None and STEP.search(chunk):
                first = now
            if b"epoch  1:" in chunk:
                last = now
        end = time.perf_counter()
        if proc.wait() != 0 or first is None or last is None:
            raise SystemExit(f"the command failed or printed no progress:\n{seen.decode(errors='replace')[-2000:]}")
    return first - t0, last - first, end - last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.1f}; {args.steps} steps of batch 32, 1 epoch")
    rows = [one_run(args.steps, args.threads) for _ in range(args.runs)]
    for name, i, target in (("before the first step", 0, 2.0), ("training + validation", 1, None), ("after", 2, 1.0)):
        values = [r[i] for r in rows]
        goal = f" (target at most {target:g} s)" if target else ""
        every = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:<24} median {statistics.median(values):5.2f} s, all {every}{goal}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
