"""The ``arcodec`` command line: each command parses options and calls one library function."""

from arcodec.cli.main import main

__all__ = ["main"]
