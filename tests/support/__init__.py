"""The harness that the browser tests and the scripts in scripts/ share.

- `chromium`: Debian's Chromium as Playwright starts it, and a plotly data-to-screen helper;
- `server`: `streamlit run dashboard.py` on a free port, its memory and CPU, its log's problems;
- `pages`: what a person does in one browser tab (open, move the sidebar, Train, Stop, switch pages);
- `sessions`: many tabs at once, each following a plan, with what each one saw.
"""
