"""torch._dynamo only when something compiles: ~0.8 s of every hymtl process.

Two things load all of dynamo in a run that never compiles:
- torchvision (0.2x) imports `is_compile_supported` from `torch._dynamo.utils` when the package
  is imported, for one branch of `ops.roi_align` that hymtl's models never take. While
  torchvision's own `__init__` runs, and only then, `torch._dynamo.utils` is a stand-in whose
  `is_compile_supported` imports the real one when called; any other name loads the real module.
- torch.optim calls `torch._dynamo.disable` (through `torch._disable_dynamo`, on the first call
  of `add_param_group`, `zero_grad`, `state_dict`...) and `torch._dynamo.graph_break()` (twice
  in every `step`). Until `torch._dynamo` has been loaded nothing in the process can be
  compiling, so both are exact no-ops; `DeferredDynamo` answers those two and loads the real
  package into itself, in place, the first time anything else is asked of it. From then on it is
  the real module: `torch.compile`, `import torch._dynamo.config`, `torch._dynamo.reset()`...
  all work as before, and the functions torch.optim wrapped meanwhile are disabled for real.

`install()` (called by `import hymtl`) sets both up. Nothing happens if dynamo is already
imported, and the torchvision part only if torchvision is not.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

DYNAMO = "torch._dynamo"
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


class DeferredDynamo(types.ModuleType):
    """`sys.modules["torch._dynamo"]` until something other than torch.optim's two calls uses it."""

    def __getattr__(self, name: str):
        load_in_place(self)
        if name == "__path__":  # `import torch._dynamo.X`: loading the package may have imported X
            AlreadyImported.pending = frozenset(newly_imported)
        return getattr(self, name)


def graph_break(msg: str = "") -> None:
    """Outside compiled code a graph break does nothing, and nothing compiles yet."""


def disable(fn=None, recursive=True, *, reason=None, wrapping=True):
    """What `torch._disable_dynamo` asks for on a function's first call: the function itself.

    torch caches the answer on the function; loading dynamo drops that cache, so the next call
    gets the real `disable`. Any other use of `disable` loads dynamo and answers for real."""
    if fn is None or reason is not None or wrapping:
        return load_in_place(sys.modules[DYNAMO]).disable(
            fn, recursive, reason=reason, wrapping=wrapping
        )
    answered_as_themselves.append(fn)
    return fn


answered_as_themselves: list = []  # functions `disable` returned unchanged, for load_in_place
newly_imported: set[str] = set()  # torch._dynamo.* modules its __init__ imported
loading = threading.RLock()
load_running = False


def load_in_place(module: types.ModuleType) -> types.ModuleType:
    """Run torch/_dynamo/__init__.py in `module`, as an import would: it becomes the real one."""
    global load_running
    with loading:
        if type(module) is not DeferredDynamo:
            return module  # another thread loaded it while this one waited
        if load_running:  # asked by dynamo's own __init__: partly initialized, as on any import
            raise AttributeError(f"partially initialized module {DYNAMO!r}")
        spec = module.__spec__
        for stand_in in ("graph_break", "disable"):
            module.__dict__.pop(stand_in, None)
        module.__path__ = spec.submodule_search_locations
        before = set(sys.modules)
        load_running = spec._initializing = True
        try:
            spec.loader.exec_module(module)
        except BaseException:
            if sys.modules.get(DYNAMO) is module:  # as a failed import: the next one starts over
                del sys.modules[DYNAMO]
            torch = sys.modules.get("torch")
            if torch is not None and torch.__dict__.get("_dynamo") is module:
                del torch._dynamo
            raise
        finally:
            load_running = spec._initializing = False
            module.__class__ = types.ModuleType
            for fn in answered_as_themselves:
                if fn.__dict__.get("__dynamo_disable") is fn:
                    del fn.__dynamo_disable  # type: ignore[attr-defined]
            answered_as_themselves.clear()
        newly_imported.update(
            n for n in sys.modules if n.startswith(DYNAMO + ".") and n not in before
        )
        return module


class AlreadyImported(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import torch._dynamo.X` while dynamo was deferred asks for `__path__`, which loads the
    package; its `__init__` imports most of its submodules, X among them, and the import system,
    having checked `sys.modules` before asking, would execute X a second time. The first finder
    asked afterwards hands it the module already imported."""

    pending: frozenset[str] = frozenset()

    def find_spec(self, name, path, target=None):
        pending, AlreadyImported.pending = AlreadyImported.pending, frozenset()
        module = sys.modules.get(name)
        if name not in pending or module is None:
            return None
        return importlib.machinery.ModuleSpec(name, self, loader_state=module.__spec__)

    def create_module(self, spec):
        return sys.modules[spec.name]

    def exec_module(self, module) -> None:
        if module.__spec__.loader is self:  # the import system set it to ours, where it could
            module.__spec__ = module.__spec__.loader_state


def dynamo_loaded() -> bool:
    module = sys.modules.get(DYNAMO)
    return module is not None and not isinstance(module, DeferredDynamo)


def defer_dynamo() -> None:
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is None or not torch_spec.submodule_search_locations:
        return
    spec = importlib.machinery.PathFinder.find_spec(DYNAMO, torch_spec.submodule_search_locations)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    module = DeferredDynamo(DYNAMO)
    module.__spec__, module.__loader__, module.__package__ = spec, spec.loader, DYNAMO
    module.__file__ = spec.origin
    module.graph_break, module.disable = graph_break, disable
    sys.modules[DYNAMO] = module
    if not any(isinstance(f, AlreadyImported) for f in sys.meta_path):
        sys.meta_path.insert(0, AlreadyImported())


def install() -> None:
    if DYNAMO in sys.modules:
        return
    defer_dynamo()
    if "torchvision" in sys.modules:
        return
    remove()
    sys.meta_path.insert(0, TorchvisionFinder())
