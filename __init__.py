"""Curate image datasets by clustering: the ``@curate/clustering`` plugin."""

from .operators import OPERATORS
from .panels import PANELS


def register(p):
    for cls in OPERATORS + PANELS:
        p.register(cls)
