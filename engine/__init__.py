"""Tunebench engine: every torch job as a command-line program that streams protocol events."""

__version__ = "0.1.0"
