"""Tests of the local layer (docs/testing.md §1)."""
