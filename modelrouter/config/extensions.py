"""Which compiled twins of the request path are in use (and the switch that turns them off).

These hot methods have a compiled twin, built from a Cython source beside their module when the
package is installed on a machine with a C compiler (``setup.py``; the build is optional):

- ``RoutingMiddleware.__call__`` (``asgi/middleware_c.pyx``; the middleware's C copy in
  ``asgi/middleware_core_c.pyx``), which the class's call slot runs without a coroutine of
  its own,
- ``Experiment.route_checked`` (``routing/experiment_c.pyx``) and ``Experiment.record``
  (``routing/feedback_c.pyx``),
- ``MemoryStore.expose_unit``, ``MemoryStore.expose_decision`` and ``UnitTable.add``, with the
  store's lock and hot-path state (``store/hot_c.pyx``; ``store/unit_path.py``),
- ``AutoJournal.fold``, ``PendingRing.remember`` and ``store.rows.add_to_pair``
  (``store/columns_c.pyx``),
- ``MemoryStore.record_seq`` (``store/record_c.pyx``),
- ``BanditRouter.route`` (``routing/bandit_c.pyx``) and ``DecisionTracker.open`` / ``apply``
  (``store/decisions_c.pyx``), the bandit's request path,
- ``Bucketer.__call__`` (``routing/assignment_c.pyx``: its own BLAKE2b for ASCII ids).

Each twin does exactly what the Python method does (the tests run both on the same requests and
compare every decision, counter and column); it only skips the interpreter. Without a compiler,
or with the environment variable ``MODELROUTER_NO_EXTENSIONS`` set to a non-empty value other
than ``0`` when ``modelrouter`` is imported, the Python methods run (as aiohttp's and
multidict's ``*_NO_EXTENSIONS`` switches do).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

__all__ = ["CoreMirror", "compiled", "install", "install_function", "load_extension",
           "python_function", "python_method"]

_loaded: dict[str, bool] = {}


def _disabled() -> bool:
    value = os.environ.get("MODELROUTER_NO_EXTENSIONS", "")
    return value not in ("", "0")


def load_extension(name: str) -> ModuleType | None:
    """The compiled module ``name``; None when it was not built or extensions are turned off.
    Records the outcome for :func:`compiled`."""
    module: ModuleType | None = None
    if not _disabled():
        try:
            module = importlib.import_module(name)
        except ImportError:  # not built on this machine: the Python twin runs
            module = None
    _loaded[name] = module is not None
    return module


def compiled() -> dict[str, bool]:
    """Per compiled module asked for so far, whether its twin is in use (a copy)."""
    return dict(_loaded)


_python: dict[tuple[type | str, str], object] = {}
_MISSING = object()


def install(cls: type, method: str, module: str, twin: str | None = None) -> None:
    """Make the compiled ``module.<twin>`` the method ``cls.<method>`` when it was built (the
    twin is named ``twin``, else like the method, ``call`` for ``__call__``); the Python method
    stays reachable through :func:`python_method`."""
    _python[(cls, method)] = cls.__dict__[method]
    ext = load_extension(module)
    if ext is not None:
        name = twin or ("call" if method == "__call__" else method)
        setattr(cls, method, getattr(ext, name))


def install_function(namespace: dict[str, Any], name: str, module: str) -> None:
    """Make the compiled ``module.<name>`` the module-level function ``name`` of the module
    whose globals are ``namespace`` (call it at the end of that module, before anything
    imports the name); the Python function stays reachable through :func:`python_function`."""
    _python[(namespace["__name__"], name)] = namespace[name]
    ext = load_extension(module)
    if ext is not None:
        namespace[name] = getattr(ext, name)


def python_function(module: str, name: str) -> object:
    """The Python function ``module.<name>`` that :func:`install_function` may have replaced."""
    return _python[(module, name)]


def python_method(cls: type, method: str) -> object:
    """The Python method ``cls.<method>`` that :func:`install` may have replaced."""
    return _python[(cls, method)]


class CoreMirror:
    """Mixin of an object whose compiled twin reads its attributes from a C copy (``_core``,
    built at the end of its ``__init__``; None where nothing was compiled): setting any
    attribute (or deleting one) refreshes that copy, so a replaced clock, reader or signer is
    seen at once. A value a C field cannot hold (``_target_of`` not a dict, say) is refused
    with the field's TypeError or OverflowError, naming the attribute, and the object keeps
    its old value (the Python methods would have taken it)."""

    _core: Any = None

    def __setattr__(self, name: str, value: Any) -> None:
        core = self.__dict__.get("_core")
        if core is None:
            object.__setattr__(self, name, value)
            return
        old = self.__dict__.get(name, _MISSING)
        object.__setattr__(self, name, value)
        try:
            core.refresh(self)
        except (TypeError, OverflowError) as exc:  # a C field's type or range: refused
            if old is _MISSING:
                self.__dict__.pop(name, None)
            else:
                self.__dict__[name] = old
            core.refresh(self)
            raise type(exc)(f"{type(self).__name__}.{name} ({type(value).__name__}) cannot be "
                            f"read by the compiled request path ({exc}); it was not "
                            "changed (MODELROUTER_NO_EXTENSIONS=1 runs the Python methods)"
                            ) from exc

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        core = self.__dict__.get("_core")
        if core is not None:
            core.refresh(self)

    def __copy__(self) -> Any:
        """A shallow copy with a C copy of its own (a shared one would make the original's
        compiled twin read the attributes set on the copy)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        core = self.__dict__.get("_core")
        if core is not None:
            fresh = type(core)()
            new.__dict__["_core"] = fresh
            fresh.refresh(new)
        return new

