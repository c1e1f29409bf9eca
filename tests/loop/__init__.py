"""Tests of the loop layer (docs/testing.md §1)."""
