"""Operators for embeddings (not written yet)."""

OPERATORS = []
