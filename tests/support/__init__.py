"""Test doubles and helpers shared by the suites; never imported by production code."""
