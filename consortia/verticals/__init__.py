"""Industry verticals, each a package exposing ``VERTICAL``; registered by name.

Add a vertical by writing ``consortia/verticals/<name>/__init__.py`` with a ``VERTICAL`` and one
``VERTICALS.register_lazy`` line in ``consortia/catalog.py`` (or call ``VERTICALS.register`` from your own code).
"""

from __future__ import annotations

from consortia.catalog import VERTICALS
from consortia.verticals.base import Vertical


def get_vertical(name: str) -> Vertical:
    vertical: Vertical = VERTICALS.get(name)
    return vertical


__all__ = ["VERTICALS", "Vertical", "get_vertical"]
