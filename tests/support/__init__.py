"""The harness that the browser tests and the scripts in scripts/ share.

- `chromium`: Debian's Chromium as Playwright starts it, and a plotly data-to-screen helper;
- `server`: `streamlit run dashboard.py` on a free port, its memory and CPU, its log's problems;
- `pages`: what a person does in one browser tab (open, move the sidebar, Train, Stop, switch pages);
- `sessions`: many tabs at once, each following a plan, with what each one saw;
- `st_client`: a session without a browser, through Streamlit's own websocket protocol (`tiny_app` is its test's app);
- `classroom`: a class at one server (protocol sessions, a teacher who leads, a few tabs): the class load test.
"""
