"""Tests of the core layer (docs/testing.md §1)."""
