"""The dashboard's Streamlit layer, between the core (`convae`) and the pages (`app_pages/`).

- `services`: the server's shared services (store, jobs, data provisioning) and a page's context
- `state`: session keys, defaults (from `TrainConfig`), ranges, the address-bar sync
- `sidebar`: the configuration's controls, Train / Stop
- `results`: each model's cached analysis and the small computations behind the pages' controls
- `training`: the Train page's blocks about jobs
- `baseline`: PCA of the images, the linear baseline (fitted once per data set and server)
- `sweep`: the sweep page's series, clicks and "fill the gaps"; `network`: the inside view's pictures
- `charts`, `latent_charts`, `lesson_charts`: every Plotly figure
- `images`: pictures for `st.image`

Heavy objects live in `st.cache_resource` (one per server process); per-browser choices live in
`st.session_state`. No background thread calls `st.*`.
"""
