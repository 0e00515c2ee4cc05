"""Operators for projection (not written yet)."""

OPERATORS = []
