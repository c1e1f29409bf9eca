"""Helpers the test layers share (emulator, operator bed, loop harness, local-run helpers...):
imported as ``tests.support.<module>``, never from another test module."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root: tests read its files (charts, CRDs, docs, examples) through this one name."""
