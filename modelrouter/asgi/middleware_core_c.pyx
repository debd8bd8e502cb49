# cython: language_level=3, boundscheck=False, wraparound=False, binding=True
"""What the compiled request path (``asgi/middleware_c.pyx``) reads from a
``RoutingMiddleware``, as C fields: a :class:`MiddlewareCore` that the middleware builds once
and refreshes whenever one of its attributes is set (``RoutingMiddleware.__setattr__``); and
its steps around the app: the unit id read from the header's bytes, the decision put into the
request's state, and what ``await`` iterates (CPython's protocol, for the app's awaitable).

A generic attribute read from C costs ~350 instructions, more than CPython 3.11's specialised
bytecode; a C field costs one load. The middleware's ``CoreMirror`` keeps the copy current.
"""

from inspect import CO_ITERABLE_COROUTINE
from time import perf_counter
from types import GeneratorType

from cpython.object cimport Py_TYPE
from libc.string cimport memcpy

from modelrouter.routing.clocks cimport perf_now, wall_now

from modelrouter.routing.decision import Decision
from modelrouter.routing.experiment_c import route_checked as _route_checked_twin


cdef extern from "Python.h":
    ctypedef struct _Typed "PyTypeObject":  # the one field read here
        unsigned int tp_version_tag
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    bint PyCoro_CheckExact(object o)
    bint PyIter_Check(object o)


def clock_now_py(bint wall):
    """``time.time()`` (``wall``) or ``time.perf_counter()`` as the request path reads them
    in C (routing/clocks.pxd), for tests; None where they cannot be read in C."""
    cdef double t = 0.0
    if (wall_now(&t) if wall else perf_now(&t)) != 0:
        return None
    return t


cdef object header_unit(MiddlewareCore core, object scope):
    """The unit id of the request: from the header's bytes when they are printable ASCII
    (no space at either end) within the bound, else whatever the ``UnitReader`` says."""
    cdef bytes name = core.fast_header
    cdef const unsigned char* p
    cdef Py_ssize_t n, j
    reader = core.read_unit
    if name is None:
        return reader(scope)
    headers = scope["headers"]
    if type(headers) is not list and type(headers) is not tuple:
        # any other iterable may be one-shot (a generator): the reader's single pass reads it
        return reader(scope)
    for item in headers:
        key, raw = item
        if key == name:
            if type(raw) is not bytes:
                return reader(scope)
            n = len(<bytes>raw)
            if n == 0 or n > core.max_length:
                return reader(scope)
            p = <const unsigned char*><bytes>raw
            if p[0] == 0x20 or p[n - 1] == 0x20:
                return reader(scope)
            for j in range(n):
                if p[j] < 0x20 or p[j] > 0x7e:
                    return reader(scope)
            unit = PyUnicode_New(n, 127)  # printable ASCII: the str of the same bytes
            memcpy(PyUnicode_DATA(unit), p, n)
            return unit
    return reader(scope)


cdef class MiddlewareCore:
    """What the request path reads from a ``RoutingMiddleware``, as C fields."""

    def refresh(self, mw):
        """Read every field from the middleware again (it calls this when an attribute of
        its changes: the router sets surface, shadows and replay after building it)."""
        cdef double now
        d = mw.__dict__
        experiment = d.get("experiment")
        self.app, self.experiment, self.lifecycle = d.get("app"), experiment, d.get("lifecycle")
        reader = self.read_unit = d.get("_read_unit")
        self.fast_header = getattr(reader, "fast_header", None)
        self.max_length = getattr(reader, "max_length", 0)
        self.read_segment, self.covariates = d.get("_read_segment"), d.get("_covariates")
        self.timer, self.entries = d.get("_timer"), d.get("_entries")
        # the default timer is read in C (perf_now): a call through the interpreter avoided
        self.perf = self.timer is perf_counter and perf_now(&now) == 0
        self.threshold = d.get("_threshold") or 0
        typed = d.get("_typed")
        self.typed = typed if type(typed) is EntryBuffer else None  # else: the list's appends
        self.fold_journal = d.get("_fold_journal")
        self.routed, self.finish = mw._routed, mw._finish
        self.http_prefix, self.every_path = d.get("_http_prefix"), d.get("_every_path", False)
        self.target_of = d.get("_target_of")
        self.surface, self.shadows = d.get("surface"), d.get("shadows")
        self.replay, self.signer = d.get("replay"), d.get("_signer")
        core = getattr(experiment, "_core", None)
        # the route as a C call only while route_checked is the compiled twin's
        own = getattr(type(experiment), "route_checked", None) is _route_checked_twin
        self.route = core if own and isinstance(core, RouteCore) else None
        self.route_tag = 0


cdef bint route_is_twin(MiddlewareCore core) except -1:
    """Whether the experiment's class still has the compiled ``route_checked`` (a test may
    patch the class after construction): read again whenever the class changed, which
    changes its version tag (0: not yet tagged; then read every time)."""
    experiment = core.experiment
    cdef _Typed* t = <_Typed*>Py_TYPE(experiment)
    cdef unsigned int tag = t.tp_version_tag
    if tag != 0 and tag == core.route_tag:
        return True
    if type(experiment).route_checked is not _route_checked_twin:
        return False
    core.route_tag = t.tp_version_tag  # (the lookup just tagged it)
    return True


cdef object target_of(MiddlewareCore core, object scope, object decision):
    """Give the request's state the decision; the app of the decision's variant."""
    cdef bint plain = type(scope) is dict  # (then read and written without a method call)
    state = (<dict>scope).get("state") if plain else scope.get("state")
    if not state:  # uvicorn's per-request copy of an empty lifespan state: the common case
        state = {"modelrouter": decision}
    elif type(state) is dict:
        state = state.copy()  # never the server's dict: a request's state is its own
        state["modelrouter"] = decision
    else:
        state = {**state, "modelrouter": decision}
    if plain:
        (<dict>scope)["state"] = state
    else:
        scope["state"] = state
    variant = (<tuple>decision)[1] if type(decision) is Decision else decision.variant
    return core.target_of[variant]


cdef bint counted(object decision) except -1:
    """The decision's ``counted`` (a tuple's item read in C)."""
    return (<tuple>decision)[8] if type(decision) is Decision else decision.counted


cdef object exception_of(object typ, object val, object tb):
    """The exception ``throw(typ, val, tb)`` raises (the generator protocol's forms)."""
    if isinstance(typ, BaseException):
        exc = typ
    elif val is None:
        exc = typ()
    elif isinstance(val, typ):
        exc = val
    else:
        exc = typ(val)
    return exc if tb is None else exc.with_traceback(tb)


cdef object awaitable_of(object obj, type own):
    """What ``await obj`` iterates (CPython's GET_AWAITABLE): a coroutine or an ``own``
    (the middleware's Flight) itself, else what its ``__await__`` returns (an iterator), with
    CPython's TypeErrors."""
    if PyCoro_CheckExact(obj) or type(obj) is own:
        return obj
    if isinstance(obj, GeneratorType) and obj.gi_code.co_flags & CO_ITERABLE_COROUTINE:
        return obj  # a @types.coroutine generator
    method = getattr(type(obj), "__await__", None)
    if method is None:
        raise TypeError(f"object {type(obj).__name__} can't be used in 'await' expression")
    it = method(obj)
    if PyCoro_CheckExact(it):
        raise TypeError("__await__() returned a coroutine")
    if not PyIter_Check(it):
        raise TypeError(f"__await__() returned non-iterator of type '{type(it).__name__}'")
    return it
