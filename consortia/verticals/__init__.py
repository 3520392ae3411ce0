"""Industry verticals, each a package exposing ``VERTICAL``; registered by name.

Add a vertical by writing ``consortia/verticals/<name>/__init__.py`` with a ``VERTICAL`` and one
``VERTICALS.register_lazy`` line below (or call ``VERTICALS.register`` from your own code).
"""

from __future__ import annotations

from consortia.registry import Registry
from consortia.verticals.base import Vertical

VERTICALS: Registry = Registry("vertical")
VERTICALS.register_lazy("healthcare", "consortia.verticals.healthcare:VERTICAL")
VERTICALS.register_lazy("finance", "consortia.verticals.finance:VERTICAL")
VERTICALS.register_lazy("manufacturing", "consortia.verticals.manufacturing:VERTICAL")
VERTICALS.register_lazy("synthetic", "consortia.verticals.synthetic:VERTICAL")


def get_vertical(name: str) -> Vertical:
    return VERTICALS.get(name)


__all__ = ["VERTICALS", "Vertical", "get_vertical"]
