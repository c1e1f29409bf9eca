"""Tests of the monitoring layer (docs/testing.md §1)."""
