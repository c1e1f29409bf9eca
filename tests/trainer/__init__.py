"""Tests of the trainer layer (docs/testing.md §1)."""
