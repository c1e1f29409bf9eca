"""Tests of the operator layer (docs/testing.md §1)."""
