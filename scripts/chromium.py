"""What the browser scripts and the browser test share: how Chromium is started, and page helpers.

Debian's chromium, driven by Playwright with `executable_path` (never a browser Playwright downloads
itself), headless, with the flags below and a fresh profile each time.
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# The screen position of a data point (x, y) of the index-th plotly chart on the page.
DATA_TO_SCREEN_JS = """([index, x, y]) => {
  const g = document.querySelectorAll('.js-plotly-plot')[index];
  const fl = g._fullLayout, r = g.getBoundingClientRect();
  return [r.left + fl.xaxis._offset + fl.xaxis.l2p(x), r.top + fl.yaxis._offset + fl.yaxis.l2p(y)];
}"""
