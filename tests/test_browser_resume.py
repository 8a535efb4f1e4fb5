"""In a real browser: a run of 30 epochs on a quick subset, the server killed with SIGKILL after its second
epoch, a new server on the same runs folder; the Train page says the run was interrupted after epoch 2
(or later) and offers Resume; one click, and the run ends with all 30 epochs in the loss chart."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from convae.synthetic import make_synthetic
from tests.support.server import Server
from tests.test_browser import ARTIFACTS, TRAIN_S, browser_page, chromium_or_skip, start_or_fail

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADDRESS = "/?k=3&epochs=30&train_size=1000&mean_init=1"  # the sidebar's configuration lives in the address
VAL_POINTS_JS = """() => {
  for (const g of document.querySelectorAll('.js-plotly-plot')) {
    const d = (g._fullData || []).find(t => String(t.name).startsWith('validation loss'));
    if (d) return d._length ?? d.x.length;
  }
  return -1;
}"""


def start(root: Path, name: str) -> Server:
    return start_or_fail(Server(root / "data", root / "runs", root / f"{name}.log", env={"OMP_NUM_THREADS": "1"}))


def test_kill_9_after_the_second_epoch_then_resume(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    chromium_or_skip()
    make_synthetic(tmp_path / "data", n_train=1000, n_val=200)
    ARTIFACTS.mkdir(exist_ok=True)
    first = start(tmp_path, "server-1")
    second = None
    with browser_page("e2e-resume-failure.png") as page:
        try:
            page.goto(first.url + ADDRESS)
            sidebar = page.locator('[data-testid="stSidebar"]')
            expect(sidebar).to_contain_text("K=3 · 30 epochs · lr 0.001 · batch 32 · 1,000 images")
            sidebar.get_by_role("button", name="Train", exact=True).click()

            deadline = time.monotonic() + TRAIN_S
            while not re.search(r"kept epoch ([2-9]|\d\d)/30", first.log_text()):  # epoch 2 is on disk
                assert time.monotonic() < deadline, first.log_text()[-3000:]
                assert "kept epoch 30/30" not in first.log_text()
                time.sleep(0.02)
            first.proc.kill()  # SIGKILL, in the middle of epoch 3 or so
            first.proc.wait()
            first.__exit__(None, None, None)
            assert not list((tmp_path / "runs").glob("*.pt"))  # nothing but the kept epoch survived the kill

            second = start(tmp_path, "server-2")
            page.goto(second.url + ADDRESS)
            said = page.get_by_text(re.compile(r"Interrupted after epoch (\d+) of 30\."))
            said.wait_for()
            epoch = int(re.search(r"epoch (\d+) of 30", said.inner_text()).group(1))
            assert 2 <= epoch < 30
            expect(sidebar.get_by_role("button", name="Resume", exact=True)).to_be_visible()
            page.wait_for_function(f"({VAL_POINTS_JS})() === {epoch}")  # the epochs kept, drawn
            page.screenshot(path=str(ARTIFACTS / "e2e-resume-interrupted.png"))

            page.get_by_role("button", name=re.compile(r"^Resume \(the last \d+ epochs\)$")).click()
            page.get_by_text("Done: validation MSE").wait_for(timeout=TRAIN_S * 1000)
            page.wait_for_function(f"({VAL_POINTS_JS})() === 30")  # every epoch in the loss chart
            expect(sidebar).to_contain_text("Trained model · 30 epochs")
            page.screenshot(path=str(ARTIFACTS / "e2e-resume-done.png"))
        finally:
            if second is not None:
                second.__exit__(None, None, None)
    log = second.log_path.read_text()
    assert f"resumes mnist-q32-32-k3-e30-lr0.001-b32-n1000-s0-mi after epoch {epoch}" in log
    assert "Traceback" not in log, log[-3000:]
