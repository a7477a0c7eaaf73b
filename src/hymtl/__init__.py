"""hymtl: reproducible transfer-learning experiments on image folders."""

from hymtl import lazy_dynamo
from hymtl.errors import UserError, display_path

lazy_dynamo.install()  # before anything imports torchvision: see lazy_dynamo

__version__ = "0.1.0"
__all__ = ["UserError", "display_path"]
