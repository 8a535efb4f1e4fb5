"""ui.page_charts: the figures that are the same for every tab showing a model are built once, not once per
tab (a class that follows the teacher asks for them thirty times within a second)."""

from __future__ import annotations

import pytest

from tests.test_app import assert_clean, open_page, texts
from ui import page_charts


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of the builder `name` that ui.page_charts uses."""
    calls: list[int] = []
    real = getattr(page_charts, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(page_charts, name, counted)
    return calls


def three_tabs(page: str, shows) -> list:
    """Three tabs of `page`, each drawn without an error and showing what `shows(tab)` checks."""
    tabs = [open_page(page) for _ in range(3)]
    for at in tabs:
        assert_clean(at)
        assert shows(at)
    return tabs


@pytest.mark.usefixtures("shipped")
def test_the_stored_runs_loss_chart_is_built_once_for_all_tabs(monkeypatch: pytest.MonkeyPatch) -> None:
    built = counting(monkeypatch, "loss_figure")
    tabs = three_tabs(
        "dashboard.py", lambda at: any(s.startswith("Loss history of the model shown") for s in texts(at.subheader))
    )
    assert len(built) == 1
    tabs[0].toggle(key="log_y").set_value(True).run()  # another figure: a log axis
    assert_clean(tabs[0])
    assert len(built) == 2


@pytest.mark.usefixtures("shipped")
def test_the_latent_walks_plane_and_its_decoded_grid_are_built_once_for_all_tabs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planes = counting(monkeypatch, "walk_figure")
    grids = counting(monkeypatch, "image_grid")
    tabs = three_tabs("app_pages/walk.py", lambda at: texts(at.title) == ["Walk the latent space"])
    assert (len(planes), len(grids)) == (1, 1)
    tabs[0].slider(key="grid_n").set_value(6).run()  # another lattice: decoded once more
    assert_clean(tabs[0])
    assert (len(planes), len(grids)) == (1, 2)


@pytest.mark.usefixtures("shipped")
def test_compare_runs_loss_curves_are_built_once_for_all_tabs(monkeypatch: pytest.MonkeyPatch) -> None:
    built = counting(monkeypatch, "runs_loss_figure")
    three_tabs("app_pages/compare.py", lambda at: texts(at.title) == ["Compare runs"])
    assert len(built) == 1


def test_a_shared_figure_is_made_into_a_dict_once_and_sends_the_same() -> None:
    import plotly.graph_objects as go
    import plotly.io as pio
    import plotly.tools

    from ui.charts import SharedFigure, shared

    def build() -> go.Figure:
        return go.Figure(go.Scatter(x=[1, 2, 3], y=[3.5, 1, 2], name="a"), layout={"height": 300})

    fig = shared(build())
    assert type(fig) is SharedFigure and isinstance(fig, go.Figure)
    sent = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)  # as st.plotly_chart does
    assert plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True) is sent  # made once
    assert pio.to_json(sent, validate=False) == pio.to_json(build().to_dict(), validate=False)
    assert shared(None) is None
