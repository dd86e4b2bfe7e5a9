"""Errors the user can cause; the CLI prints them as one line."""


class ArcodecError(Exception):
    """Base class of every expected failure (bad input, bad file, unknown model)."""


class FormatError(ArcodecError):
    """The bytes are not a valid .arc file (magic, version, truncation, corruption)."""


class IntegrityError(ArcodecError):
    """The file decoded, but the CRC32 of the pixels does not match: it is corrupt."""


class ModelError(ArcodecError):
    """Unknown model, or weights that differ from what the file or the zoo expects."""
