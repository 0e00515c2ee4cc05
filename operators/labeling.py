"""Operators for labeling (not written yet)."""

OPERATORS = []
