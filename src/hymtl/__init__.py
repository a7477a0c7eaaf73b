"""hymtl: reproducible transfer-learning experiments on image folders."""

from hymtl.errors import UserError, display_path

__version__ = "0.1.0"
__all__ = ["UserError", "display_path"]
