"""Tests of the docs layer (docs/testing.md §1)."""
