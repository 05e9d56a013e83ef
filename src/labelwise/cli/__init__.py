"""The `labelwise` command: one module per group of verbs, each a thin layer over the Python API."""
from labelwise.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
