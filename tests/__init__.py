"""The kubenas test suite: one folder per layer, shared helpers in tests/support/ (docs/testing.md §1)."""
