"""Pure computation on numpy arrays and file paths.

Nothing in this package imports ``fiftyone``: it is where the work is, and
it is testable with plain arrays.
"""
