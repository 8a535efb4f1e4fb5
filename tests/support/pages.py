"""What a person does in one browser tab of the dashboard (async Playwright): open it, move the
sidebar to a configuration, press Train or Stop, switch pages through the top navigation."""

from __future__ import annotations

import asyncio
import collections
import re
import time

from playwright.async_api import TimeoutError as PlaywrightTimeout

from convae.train import TrainConfig

PAGES = {  # navigation title -> (section of the top navigation, heading the page draws)
    "Train": ("The assignment", "Train the auto-encoder"),
    "Reconstructions": ("The assignment", "Reconstructions (Figure 1)"),
    "Latent space": ("The assignment", "Latent space"),
    "Mixtures": ("The assignment", "Mixtures of classes (Figure 2)"),
    "Latent walk": ("Explore further", "Walk the latent space"),
    "Compare runs": ("Explore further", "Compare runs"),
    "Bottleneck sweep": ("Explore further", "Bottleneck sweep"),
    "Inside the network": ("Explore further", "Inside the network"),
}
SETUP_WAIT_S = 20  # for the sidebar to show a change (every change reruns the script)
# What the Train page says once Stop has ended a job (in its first epoch, or after a finished one).
STOPPED = re.compile(r"Stopped (during the first epoch|after epoch \d+ of \d+)")


async def open_session(browser, url: str, timeout_s: float = 60):
    """Open the app in a browser context of its own (a tab with its own session); the page once the Train
    page and its button are drawn, with `page.open_s` the seconds that took."""
    t0 = time.perf_counter()
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.websockets_opened = 0  # more than one: the tab lost its connection and reconnected

    page.frames_in = collections.deque(maxlen=3000)  # (time, message): the server's last messages, for a report
    page.console_lines: list[str] = []  # the browser console's warnings and errors, for a report

    def opened(ws) -> None:
        if "/_stcore/stream" in ws.url:
            page.websockets_opened += 1
            ws.on("framereceived", lambda data: page.frames_in.append((time.perf_counter(), data)))

    def console(msg) -> None:
        if msg.type in ("error", "warning") and len(page.console_lines) < 200:
            page.console_lines.append(f"{msg.type}: {msg.text[:300]}")

    page.on("websocket", opened)
    page.on("console", console)
    page.set_default_timeout(timeout_s * 1000)
    await page.goto(url)
    await page.get_by_role("heading", name=PAGES["Train"][1]).wait_for()
    await train_button(page).wait_for()
    page.open_s = time.perf_counter() - t0
    return page


async def close_session(page) -> None:
    """Leave the app first, so that the browser closes its connection the way a closed tab does."""
    try:
        await page.goto("about:blank")
    finally:
        await page.context.close()


def sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def train_button(page):
    return sidebar(page).get_by_role("button", name=re.compile(r"^(Train|Retrain)$"))


def epochs_text(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def describe(config: TrainConfig) -> str:
    """What the sidebar caption says for this config (written out here, apart from the dashboard's code)."""
    size = "60,000" if config.train_size is None else f"{config.train_size:,}"
    return (
        f"Q1={config.q1}, Q2={config.q2}, K={config.k} · {epochs_text(config.epochs)} · lr {config.lr:g} · "
        f"batch {config.batch_size} · {size} images · seed {config.seed}"
    )


async def set_slider(page, key: str, value: int) -> None:
    """Move a sidebar slider with the keyboard: Home (its minimum, 1 here), then ArrowRight."""
    thumb = page.locator(f".st-key-{key} input[type=range]")
    if await thumb.input_value() == str(value):
        return
    await thumb.focus()
    if value == int(await thumb.get_attribute("max")):
        await thumb.press("End")
        return
    await thumb.press("Home")
    for _ in range(value - 1):
        await thumb.press("ArrowRight")


async def set_config(page, config: TrainConfig, attempts: int = 4) -> None:
    """Move the sidebar to `config` (sliders, training images, seed) and wait until it shows it.

    Every change reruns the script and redraws the sidebar. A rerun that starts while keys are still
    being pressed can put a slider back to the value it had, and a drop-down opened during a rerun
    can close again, so each step is checked against the sidebar's caption and tried again.
    """
    caption = sidebar(page).locator('[data-testid="stCaptionContainer"]')
    arch = f"Q1={config.q1}, Q2={config.q2}, K={config.k} · {epochs_text(config.epochs)} "
    size = {
        None: "all 60,000 (the assignment's)",
        1000: "1,000 (quick demo subset)",
        5000: "5,000 (quick demo subset)",
        10000: "10,000 (quick demo subset)",
    }[config.train_size]
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            for key in ("q1", "q2", "k", "epochs"):
                await set_slider(page, key, getattr(config, key))
            await caption.filter(has_text=arch).wait_for(timeout=SETUP_WAIT_S * 1000)
            combobox = page.locator(".st-key-train_size [role=combobox]")
            if await combobox.input_value() != size:
                await page.locator(".st-key-train_size button[aria-label=Open]").click()
                await page.get_by_role("option", name=size).click(timeout=SETUP_WAIT_S * 1000)
            seed = page.locator(".st-key-seed input")
            if await seed.input_value() != str(config.seed):
                await seed.fill(str(config.seed))
                await seed.press("Enter")
            await caption.filter(has_text=describe(config)).wait_for(timeout=SETUP_WAIT_S * 1000)
            return
        except PlaywrightTimeout:
            if last:
                raise
            await page.keyboard.press("Escape")


async def click_page_link(page, title: str) -> float:
    """Open a page's section in the top navigation and click its link; the time of the click."""
    section, _ = PAGES[title]
    await page.locator('[data-testid="stTopNavSection"]', has_text=section).click()
    link = page.get_by_role("menuitem", name=re.compile(rf"{re.escape(title)}$"))
    await link.wait_for()
    t0 = time.perf_counter()
    await link.click()
    return t0


async def switch_page(page, title: str) -> float:
    """Open a page through the top navigation; seconds from the click until its heading is drawn."""
    t0 = await click_page_link(page, title)
    await page.get_by_role("heading", name=PAGES[title][1], exact=True).wait_for()
    return time.perf_counter() - t0


def acknowledged(page):
    """What the Train page shows once a job was accepted: queued, starting, progress, or its end."""
    texts = [
        "Queued: position",
        "Starting…",
        "images/s",
        "Done: validation MSE",
        STOPPED,
        "Training failed",
    ]
    locator = page.get_by_text(texts[0])
    for text in texts[1:]:
        locator = locator.or_(page.get_by_text(text))
    return locator.first


async def click_train(page, how: str) -> None:
    """Press Train once, double-click it, or click it three times (the later clicks hit a disabled button)."""
    button = train_button(page)
    if how == "double":
        await button.dblclick()
    elif how == "repeat":
        await button.scroll_into_view_if_needed()
        box = await button.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for _ in range(3):
            await page.mouse.click(x, y)
            await asyncio.sleep(0.3)
    else:
        await button.click()
