"""hymtl: reproducible transfer-learning experiments on image folders."""

import os

__version__ = "0.1.0"


def display_path(path: str | os.PathLike) -> str:
    """`path` as valid UTF-8 text for CSV files, messages and log lines. Linux file names are
    bytes, and Python keeps the ones that are not UTF-8 as lone surrogates, which a UTF-8 writer
    refuses: those bytes appear as `\\xff` escapes instead, and every other name is unchanged."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class UserError(Exception):
    """A problem with the user's input (config, data, weights) that deserves one clear line,
    not a traceback. The message says what is wrong and what to do."""
