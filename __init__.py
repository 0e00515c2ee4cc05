"""Curate image datasets by clustering: the ``@curate/clustering`` plugin."""


def register(p):
    # Imported here, not at the top: importing this package must not import
    # FiftyOne (pytest imports it as the rootdir's package when it runs the
    # FiftyOne-free tests of tests/core)
    from .operators import OPERATORS
    from .panels import PANELS

    for cls in OPERATORS + PANELS:
        p.register(cls)
