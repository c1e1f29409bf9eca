"""Tests of the bench layer (docs/testing.md §1)."""
