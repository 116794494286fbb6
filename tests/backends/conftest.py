"""Registers the backends tests' fixtures (defined in backends_helpers.py)."""

from backends_helpers import catalog

__all__ = ["catalog"]
