"""Jonot Local: an offline-first queue management system for a single office."""

__version__ = "0.1.0.dev0"
