"""One builder for every vertical page: the page files only name their vertical."""

from __future__ import annotations

import streamlit as st


def render_vertical_page(name: str) -> None:
    """Sidebar settings, then the Run, Data and own-data tabs for vertical ``name``."""
    from consortia.verticals import VERTICALS

    if name not in VERTICALS:
        st.title(name.capitalize())
        st.warning(
            f"The {name} vertical is not part of this Consortia installation yet "
            f"(available: {', '.join(VERTICALS.names())})."
        )
        return

    from consortia.config import ExperimentConfig
    from consortia.demo import widgets
    from consortia.errors import ConsortiaError
    from consortia.verticals import get_vertical

    vertical = get_vertical(name)
    st.title(vertical.title)
    st.markdown(vertical.description)
    settings = widgets.sidebar_controls(vertical)
    try:
        config = ExperimentConfig.build(**settings)
    except ConsortiaError as exc:
        st.error(f"These settings cannot run: {exc}")
        return
    run, data, own, newcomer = st.tabs(["Run", "Data", "Use your own data", "New institution"])
    with run:
        widgets.run_tab(vertical, config)
    with data:
        widgets.data_tab(vertical, config)
    with own:
        widgets.upload_tab(vertical, settings)
    with newcomer:
        from consortia.demo.views.transfer import transfer_tab

        transfer_tab(vertical, config)
