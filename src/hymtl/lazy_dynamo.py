"""torchvision without torch._dynamo at start-up: ~0.8 s of every hymtl process.

torchvision (0.2x) imports `is_compile_supported` from `torch._dynamo.utils` when the package is
imported, for one branch of `ops.roi_align` that hymtl's models never take; that one import loads
all of dynamo, ~0.8 s of torchvision's ~0.9 s import (docs/performance.md, "Start-up"). While
torchvision's own `__init__` runs, and only then, `torch._dynamo.utils` is a stand-in whose
`is_compile_supported` imports the real one when called; any other name it is asked for loads
the real module on the spot. Afterwards nothing is different: `torch.compile` and anyone who
imports `torch._dynamo` get the real module, and roi_align answers as before.

`install()` (called by `import hymtl`) adds a finder that acts on the first import of
torchvision, then removes itself. Nothing happens if dynamo or torchvision is already imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

DYNAMO_UTILS = "torch._dynamo.utils"


def real_dynamo_utils() -> types.ModuleType:
    if isinstance(sys.modules.get(DYNAMO_UTILS), DynamoUtilsStandIn):
        del sys.modules[DYNAMO_UTILS]
    return importlib.import_module(DYNAMO_UTILS)


def is_compile_supported(device_type):
    return real_dynamo_utils().is_compile_supported(device_type)


class DynamoUtilsStandIn(types.ModuleType):
    """What `from torch._dynamo.utils import NAME` finds while torchvision is being imported."""

    def __getattr__(self, name: str):
        if name == "is_compile_supported":
            return is_compile_supported
        if name.startswith("__"):  # inspect asks every module for __file__: not a use of dynamo
            raise AttributeError(name)
        return getattr(real_dynamo_utils(), name)


class StandInWhileExecuting(importlib.abc.Loader):
    """torchvision's own loader, with the stand-in in place while the package executes."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # as if never wrapped
        stand_in = DynamoUtilsStandIn(DYNAMO_UTILS)
        sys.modules.setdefault(DYNAMO_UTILS, stand_in)
        try:
            self.loader.exec_module(module)
        finally:
            if sys.modules.get(DYNAMO_UTILS) is stand_in:
                del sys.modules[DYNAMO_UTILS]


class TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torchvision":
            return None
        remove()
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or DYNAMO_UTILS in sys.modules:
            return spec
        spec.loader = StandInWhileExecuting(spec.loader)
        return spec


def remove() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, TorchvisionFinder)]


def install() -> None:
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        return
    remove()
    sys.meta_path.insert(0, TorchvisionFinder())
