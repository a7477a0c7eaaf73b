"""hymtl: reproducible transfer-learning experiments on image folders."""

__version__ = "0.1.0"


class UserError(Exception):
    """A problem with the user's input (config, data, weights) that deserves one clear line,
    not a traceback. The message says what is wrong and what to do."""
