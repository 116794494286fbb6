"""Registers the shared fixtures (defined in hubtest.py, importable by name from every test folder)."""

from hubtest import browser, hub_process, in_process_hub

__all__ = ["browser", "hub_process", "in_process_hub"]
