"""The Streamlit demo: a Home page and one page per vertical, built from shared widgets.

Start it with ``consortia demo``. Pages call only the public API (``ExperimentConfig``,
``run_experiment``, ``consortia.demo.overview``); nothing here trains a model by itself.
"""

from __future__ import annotations

from pathlib import Path

#: the script ``streamlit run`` starts: it sets up navigation between the pages
APP_SCRIPT = Path(__file__).with_name("main.py")

__all__ = ["APP_SCRIPT"]
