"""Offline tools that choose the waiver's policy parameters on training data."""
