"""Tests of the deploy layer (docs/testing.md §1)."""
