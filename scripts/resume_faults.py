"""Faults that stop a server in the middle of a training, tried for real (docs/reliability.md, "Nothing
lost when the server stops"). From the repository root:

    .venv/bin/python -m scripts.resume_faults                    # every scenario
    .venv/bin/python -m scripts.resume_faults kill-write         # one of them

Each scenario starts `streamlit run dashboard.py` (tests.support.server) on small synthetic data with a
fresh runs folder, drives it from Chromium, and trains Q1 = Q2 = 32, K = 3, 30 epochs of 1,000 images:

- kill-epoch: SIGKILL to the server after its second epoch was kept; a new server; Resume;
- kill-write: SIGKILL while the third epoch is being written (its fsync held for a minute by a
  sitecustomize module on PYTHONPATH); a new server; Resume;
- full-disk: the runs folder on a 1.2 MB tmpfs: room for one kept epoch (770 kB) and the final checkpoint,
  not for the temporary file of a second kept epoch (needs root for `mount`);
- two-servers: a server killed after epoch 2, then two servers on its runs folder; both show the run as
  interrupted and Resume is pressed in both at once.

After each, every file in the runs folder is read back (checkpoints, kept epochs, the queue file), and
what the pages said is printed. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from convae.queue_file import NAME
from convae.resume import ResumeError, load_state
from convae.store import CheckpointError, load_checkpoint
from convae.synthetic import make_synthetic
from convae.train import TrainConfig
from tests.support.chromium import CHROMIUM_ARGS, chromium_path
from tests.support.server import Server

CONFIG = TrainConfig(k=3, epochs=30, train_size=1000, mean_init=True)
ADDRESS = "/?k=3&epochs=30&train_size=1000&mean_init=1"
KEY = CONFIG.key()
WAIT_S = 300
SLOW_FSYNC = f"""
import os, time
_real, _seen = os.fsync, []
def _fsync(fd):
    try:
        name = os.readlink(f"/proc/self/fd/{{fd}}")
    except OSError:
        name = ""
    if ".{KEY}.resume." in name:
        _seen.append(name)
        if len(_seen) == 3:
            time.sleep(120)  # the third kept epoch: written, not yet on disk nor renamed
    _real(fd)
os.fsync = _fsync
"""
INTERRUPTED = re.compile(r"Interrupted after epoch (\d+) of 30\.")


class Run:
    """One scenario's folders, servers and browser pages, and what it found."""

    def __init__(self, root: Path, data: Path, browser) -> None:
        self.root, self.data, self.browser = root, data, browser
        self.runs = root / "runs"
        self.failures: list[str] = []
        self.servers: list[Server] = []

    def server(self, name: str, env: dict | None = None) -> Server:
        srv = Server(self.data, self.runs, self.root / f"{name}.log", env={"OMP_NUM_THREADS": "1", **(env or {})})
        srv.__enter__()
        self.servers.append(srv)
        return srv

    def page(self, srv: Server):
        page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(srv.url + ADDRESS)
        page.locator("h1", has_text="Train the auto-encoder").wait_for()
        return page

    def check(self, ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)

    def close(self) -> None:
        for srv in self.servers:
            srv.__exit__(None, None, None)


def sidebar_button(page, name: str):
    return page.locator('[data-testid="stSidebar"]').get_by_role("button", name=name, exact=True)


def wait_log(srv: Server, pattern: str, timeout: float = WAIT_S) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, srv.log_path.read_text(errors="replace"))
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError(f"{pattern!r} not in {srv.log_path} after {timeout} s")


def kill(srv: Server) -> None:
    srv.proc.kill()  # SIGKILL: no handler, no cleanup
    srv.proc.wait()


def kept_epoch(runs: Path) -> int | None:
    try:
        return load_state(runs / f"{KEY}.resume").epoch
    except ResumeError:
        return None


def folder_report(run: Run, complete: bool) -> None:
    """Every file of the runs folder read back, as a page would."""
    runs = run.runs
    for path in sorted(runs.glob("*.pt")):
        try:
            ckpt = load_checkpoint(path)
            run.check(True, f"{path.name} loads: {len(ckpt.history.epochs)} epochs, {ckpt.label or 'complete'}")
        except CheckpointError as e:
            run.check(False, f"{path.name}: {e}")
    stored = [p for p in runs.glob("*.pt")]
    if complete:
        run.check(len(stored) == 1, f"one checkpoint of the run ({len(stored)})")
        run.check(not (runs / f"{KEY}.resume").exists(), "no kept epoch left once the run is complete")
    parts = sorted(p.name for p in runs.glob(".*.part"))
    run.check(not parts, f"no temporary file left ({parts or 'none'})")
    try:
        jobs = json.loads((runs / NAME).read_text())["jobs"]
        run.check(True, f"{NAME} reads back: {len(jobs)} entr{'y' if len(jobs) == 1 else 'ies'}")
    except (OSError, ValueError, KeyError) as e:
        run.check(False, f"{NAME}: {e}")


def resume_and_finish(run: Run, srv: Server, expected_epoch: int) -> None:
    page = run.page(srv)
    said = page.get_by_text(INTERRUPTED)
    said.wait_for()
    epoch = int(INTERRUPTED.search(said.inner_text()).group(1))
    run.check(epoch == expected_epoch, f"the new server's Train page: {said.inner_text()!r}")
    page.get_by_role("button", name=re.compile(r"^Resume \(")).click()
    page.get_by_text("Done: validation MSE").wait_for(timeout=WAIT_S * 1000)
    points = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')].map(g => (g._fullData || [])"
        ".find(t => String(t.name).startsWith('validation loss'))).filter(Boolean).map(t => t._length)[0]"
    )
    run.check(points == 30, f"after Resume: 'Done', the loss chart holds {points} of 30 epochs")
    run.check(f"resumes {KEY} after epoch {epoch}" in srv.log_text(), "the server's log: it resumed, not restarted")


def kill_epoch(run: Run) -> None:
    srv = run.server("server-1")
    page = run.page(srv)
    sidebar_button(page, "Train").click()
    wait_log(srv, r"kept epoch 2/30")
    kill(srv)
    epoch = kept_epoch(run.runs)
    run.check(epoch is not None and epoch >= 2, f"killed during epoch {epoch and epoch + 1}; epoch {epoch} is kept")
    resume_and_finish(run, run.server("server-2"), epoch)
    folder_report(run, complete=True)


def kill_write(run: Run) -> None:
    hook = run.root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_FSYNC)
    srv = run.server("server-1", env={"PYTHONPATH": str(hook)})
    page = run.page(srv)
    sidebar_button(page, "Train").click()
    deadline = time.monotonic() + WAIT_S
    while not (list(run.runs.glob(f".{KEY}.resume.*.part")) and kept_epoch(run.runs) == 2):
        assert time.monotonic() < deadline, "the third epoch was never written"
        time.sleep(0.02)
    time.sleep(0.5)  # well inside the held fsync of the third epoch (the first two went through)
    kill(srv)
    parts = [p.name for p in run.runs.glob(".*.part")]
    run.check(bool(parts), f"killed while epoch 3 was written: {parts} left half-written")
    run.check(kept_epoch(run.runs) == 2, "the kept epoch is still epoch 2, intact")
    resume_and_finish(run, run.server("server-2"), 2)
    folder_report(run, complete=True)


def full_disk(run: Run) -> None:
    run.runs.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(run.runs)], capture_output=True)
    if mounted.returncode:
        run.check(False, f"could not mount a tmpfs (needs root): {mounted.stderr.decode().strip()}")
        return
    try:
        srv = run.server("server-1")
        page = run.page(srv)
        sidebar_button(page, "Train").click()
        note = page.get_by_text(re.compile(r"Epoch \d+ could not be kept on disk \(No space left on device\)"))
        note.first.wait_for(timeout=WAIT_S * 1000)
        run.check(True, f"the Train page: {note.first.inner_text()!r}")
        run.check(kept_epoch(run.runs) == 1, "the kept epoch is epoch 1, intact; the training went on")
        page.get_by_text("Done: validation MSE").wait_for(timeout=WAIT_S * 1000)
        run.check(True, "the run ended: 'Done' (the final checkpoint, smaller, fitted)")
        run.check("Traceback" not in srv.log_text(), "no traceback in the server's log")
        folder_report(run, complete=True)
    finally:
        for srv in run.servers:
            srv.__exit__(None, None, None)
        run.servers.clear()
        subprocess.run(["umount", str(run.runs)], check=False)


def two_servers(run: Run) -> None:
    first = run.server("server-0")
    page = run.page(first)
    sidebar_button(page, "Train").click()
    wait_log(first, r"kept epoch 2/30")
    kill(first)
    epoch = kept_epoch(run.runs)
    a, b = run.server("server-a"), run.server("server-b")
    pages = [run.page(a), run.page(b)]
    for p, name in zip(pages, "ab", strict=True):
        said = p.get_by_text(INTERRUPTED)
        said.wait_for()
        run.check(f"epoch {epoch} of 30" in said.inner_text(), f"server {name}: {said.inner_text()!r}")
    logs = a.log_text() + b.log_text()
    adopted = len(re.findall(rf"job-\d+ interrupted: {re.escape(KEY)}", logs))
    run.check(adopted == 1, f"the dead server's running job was taken over by one server ({adopted})")
    for p in pages:  # Resume in both, as fast as the clicks go
        p.get_by_role("button", name=re.compile(r"^Resume \(")).click(no_wait_after=True)
    outcome = re.compile(r"Done: validation MSE|Training failed: .*being trained by another server|meanwhile")
    said = []
    for p in pages:
        p.get_by_text(outcome).first.wait_for(timeout=WAIT_S * 1000)
        said.append(p.get_by_text(outcome).first.inner_text())
    print("  pages said:", *[f"\n    {s[:160]}" for s in said])
    logs = a.log_text() + b.log_text()
    resumed = len(re.findall(rf"resumes {re.escape(KEY)}", logs))
    done = len(re.findall(rf"done: {re.escape(KEY)}", logs))
    run.check(resumed == 1 and done == 1, f"resumed once ({resumed}), trained to the end once ({done})")
    folder_report(run, complete=True)


SCENARIOS = {"kill-epoch": kill_epoch, "kill-write": kill_write, "full-disk": full_disk, "two-servers": two_servers}


def main() -> int:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenarios", nargs="*", help=f"some of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--keep", type=Path, help="work in this (new) folder and keep it: logs, runs folders")
    args = p.parse_args()
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    failures = []
    with ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        tmp.mkdir(parents=True, exist_ok=True)
        pw = stack.enter_context(sync_playwright())
        data = make_synthetic(tmp / "data", n_train=1000, n_val=200)
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        for name in args.scenarios:
            print(f"{name}:")
            run = Run(tmp / name, data, browser)
            run.root.mkdir()
            t0 = time.perf_counter()
            try:
                SCENARIOS[name](run)
            except Exception as e:  # a scenario that cannot go on is a failure, the others still run
                run.check(False, f"{type(e).__name__}: {e}")
            finally:
                run.close()
            print(f"  ({time.perf_counter() - t0:.0f} s)")
            failures += [f"{name}: {f}" for f in run.failures]
    print("\nall checks passed" if not failures else "\nFAILED:\n  " + "\n  ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
