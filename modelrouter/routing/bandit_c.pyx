# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twin of :meth:`BanditRouter.route <modelrouter.routing.bandit.BanditRouter.route>`.

``routing/bandit.py`` installs :func:`route` as the method when it was built
(``config/extensions.py``). It does the Python method's steps in the same order for the common
case (unit level, a unit id, no sticky cache): the clock, one ``random()`` of the router's
generator, the holdout or the bisection of the cumulative weights (``Weights.choose``) or the
per-request posterior draw (Python), the store's ``expose_decision``, the decision. Every other
case (no unit id, request level, sticky units, a subclass, a replaced ``_draw``, a state of
another type) is the Python method itself, called before anything is read or drawn.

Calls are C calls where the called method is the compiled twin: the memory store's
``expose_decision`` (``expose_decision_call``, store/hot_c.pyx; it calls the tracker's
``open`` in C too, store/decisions_c.pyx) and ``random.Random.random``; a subclass's or a
patched method (on the class or the instance) is called as the Python method calls it. The
router's ``_core`` and the generator's own ``random`` are read from their instance dicts
(store/dict_fields.pxd); the decision is built by routing/experiment_c's ``decision_of``.

What ``route`` reads from the router it reads from a :class:`BanditCore` (C fields), which the
router builds at the end of its ``__init__`` and refreshes whenever one of its attributes is
set (:class:`~modelrouter.config.extensions.CoreMirror`: a forked child's new context, a test's
replaced generator). What it reads from a :class:`~modelrouter.routing.bandit.BanditState` (a
frozen dataclass, swapped whole at each refresh) it reads once per state into a
:class:`StateView`; the float operations are the Python method's (built with
``-ffp-contract=off``), and a value of another type, a holdout of 0 or 1, a number outside
``[0, 1)`` goes through the Python lines (their exceptions).
"""

from cpython.array cimport array
from cpython.object cimport Py_TYPE, PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF

from modelrouter.routing.clocks cimport wall_now
from modelrouter.routing.experiment_c cimport (decision_of, hex_id, set_bandit_route,
                                               split_decision)
from modelrouter.store.dict_fields cimport Fields, instance_dict, read_fields, twin_dict
from modelrouter.store.hot_c cimport bisect_right_d, expose_decision_call

from math import nextafter
from random import Random
from time import time as _wall_clock

from modelrouter.bandit.allocator import Weights
from modelrouter.routing.policies import RouteContext

cdef extern from "Python.h":
    PyObject* _PyType_Lookup(PyTypeObject* tp, object name)
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf,
                               PyObject* kwnames)

cdef double _BELOW_ONE = nextafter(1.0, 0.0)
cdef object _BELOW_ONE_OBJ = _BELOW_ONE
cdef object _bandit_router = None  # BanditRouter, _draw, the Python route (set at the end)
cdef object _draw_py = None
cdef object _route_py = None
cdef object _bandit_state = None
cdef object _memory_store = None  # MemoryStore (set at the end)
cdef Fields _router  # the last router's _core (store/dict_fields.pxd)
cdef tuple _ROUTER = ("_core", "route")  # (its own route: route_call calls that one)
cdef Fields _rng  # the last generator's own random, if any
cdef tuple _RNG = ("random",)
cdef object _random_c = Random.random  # random.Random's: a C method of its base class


cdef class StateView:
    """One :class:`BanditState`'s fields as ``route`` uses them (read once per state)."""

    cdef readonly object st, epoch, weights, active, props
    cdef double h, one_minus_h
    cdef bint fast, per_request, choose_c
    cdef array cum
    cdef Py_ssize_t last, n_active, n_props

    def __init__(self, st):
        cdef Py_ssize_t k
        self.st = st
        self.epoch, self.weights = st.epoch, st.weights
        self.active, self.props = st.active, st.propensities
        holdout, per_request = st.holdout, st.per_request
        self.fast = (type(holdout) is float and type(per_request) is bool
                     and type(self.active) is tuple and type(self.props) is tuple)
        if not self.fast:
            return
        self.h = holdout
        self.one_minus_h = 1.0 - self.h
        self.per_request = per_request
        self.n_active, self.n_props = len(self.active), len(self.props)
        self.fast = self.one_minus_h != 0.0 and self.h == self.h
        w = self.weights
        self.choose_c = False
        if type(w) is Weights:  # Weights.choose's own fields (a frozen dataclass)
            cum, last, probs = w._cumulative, w._last, w.probabilities
            if (type(cum) is tuple and type(last) is int and type(probs) is tuple
                    and len(probs) == len(cum) and 0 <= last < len(cum)
                    and all(type(x) is float for x in cum)):
                self.cum = array("d", cum)
                self.last = last
                self.choose_c = True


cdef class BanditCore:
    """What ``route`` reads from the router (refreshed on every attribute set)."""

    cdef readonly bint fast
    cdef readonly bint wall  # clock is time.time: read in C (routing/clocks.pxd)
    cdef readonly object clock, store, names, models, prefix, rng
    cdef StateView view

    def refresh(self, router):
        """Read every field from the router again."""
        d = router.__dict__
        ctx = d.get("ctx")
        cdef double now
        self.fast = self.wall = False
        self.clock = self.store = self.names = self.models = self.prefix = self.rng = None
        if (type(router) is not _bandit_router or type(ctx) is not RouteContext
                or "_draw" in d or _bandit_router.__dict__.get("_draw") is not _draw_py
                or "_rng" not in d or "_sticky" not in d or d["_sticky"] is not None
                or ctx.unit_level is not True):
            return  # the Python method runs
        self.clock, self.store, self.names = ctx.clock, ctx.store, ctx.names
        self.models, self.prefix, self.rng = ctx.models, ctx.prefix, d["_rng"]
        self.wall = self.clock is _wall_clock and wall_now(&now) == 0
        self.fast = True


cdef object _draw_rest(object router, object st, object u):
    """``BanditRouter._draw`` after its ``random()``: the Python lines, as object operations."""
    h = st.holdout
    if u < h:  # the uniform holdout: its outcomes never train the bandit
        return st.active[min(int(u / h * len(st.active)), len(st.active) - 1)], 1
    if st.per_request:
        return st.weights.draw(router._np_rng)[0], 0
    return st.weights.choose(min((u - h) / (1.0 - h), _BELOW_ONE_OBJ))[0], 0


def route(self, unit, segment, alloc):
    """Choose an arm for one request and count the decision: see ``BanditRouter.route``
    (routing/bandit.py), the Python twin."""
    cdef PyObject* seq = NULL
    decision = _route(self, None, unit, segment, alloc, &seq)
    out = (decision, <object>seq)
    Py_XDECREF(seq)
    return out


cdef object route_call(object router, object unit, object segment, object alloc,
                       PyObject** seq_out):
    """``router.route(unit, segment, alloc)`` for the compiled experiment route
    (routing/experiment_c.pyx, which this module registers it with): the decision, ``seq`` (a
    new reference) in ``*seq_out``. A C call unless the router is a subclass or its method was
    replaced on the class or the instance (then that method is called, its pair split)."""
    if type(router) is _bandit_router:
        d = twin_dict(router, route, "route", &_router, _ROUTER, 1)
        if d is not None:
            return _route(router, d, unit, segment, alloc, seq_out)
    return split_decision(router.route(unit, segment, alloc), seq_out)


cdef object _route(object self, object d, object unit, object segment, object alloc,
                   PyObject** seq_out):
    """:func:`route`'s decision; its ``seq`` (a new reference) in ``*seq_out``. ``d``: the
    router's instance dict when the caller has read it already (``route_call``), else None."""
    cdef BanditCore c
    cdef StateView v
    cdef double ud, x, wall
    cdef PyObject* arg
    cdef Py_ssize_t i, lo, n
    cdef long long sn
    cdef int overflow = 0
    if type(self) is not _bandit_router or unit is None:
        return split_decision(_route_py(self, unit, segment, alloc), seq_out)
    if d is None:
        d = instance_dict(self)
    if d is None:
        return split_decision(_route_py(self, unit, segment, alloc), seq_out)
    read_fields(&_router, <dict>d, _ROUTER)
    if _router.values[0] == NULL or type(<object>_router.values[0]) is not BanditCore:
        return split_decision(_route_py(self, unit, segment, alloc), seq_out)
    c = <BanditCore><object>_router.values[0]
    if not c.fast:
        return split_decision(_route_py(self, unit, segment, alloc), seq_out)
    st = alloc.state
    v = c.view
    if v is None or v.st is not st:
        if type(st) is not _bandit_state:
            return split_decision(_route_py(self, unit, segment, alloc), seq_out)
        v = StateView(st)
        c.view = v
    if c.wall and wall_now(&wall) == 0:  # time.time(), read in C
        now = wall
    else:
        now = c.clock()
    rng = c.rng  # rng.random(): the C method itself unless rng's type or instance has another
    if _PyType_Lookup(Py_TYPE(rng), "random") == <PyObject*>_random_c:
        d = instance_dict(rng)
        if d is not None:
            read_fields(&_rng, <dict>d, _RNG)
        if d is not None and _rng.values[0] == NULL:
            arg = <PyObject*>rng
            u = PyObject_Vectorcall(_random_c, &arg, 1, NULL)  # Random.random(rng)
        else:
            u = rng.random()
    else:
        u = rng.random()
    i = -1
    if v.fast and type(u) is float and 0.0 <= <double>u:
        ud = u
        if ud < v.h:  # the uniform holdout: its outcomes never train the bandit
            n = v.n_active
            if n > 0:
                i = <Py_ssize_t>(ud / v.h * <double>n)
                if n - 1 < i:
                    i = n - 1
                i_obj, tag = (<tuple>v.active)[i], 1
            else:
                i_obj, tag = _draw_rest(self, st, u)
        elif v.per_request:
            i_obj, tag = v.weights.draw(self._np_rng)[0], 0
        else:
            x = (ud - v.h) / v.one_minus_h
            if _BELOW_ONE < x:
                x = _BELOW_ONE
            if v.choose_c and 0.0 <= x < 1.0:  # Weights.choose: bisect_right, then min
                lo = bisect_right_d(v.cum, x)
                if v.last < lo:
                    lo = v.last
                i_obj = lo
            else:  # its ValueError, or another Weights' choose
                i_obj = v.weights.choose(x)[0]
            tag = 0
    else:
        i_obj, tag = _draw_rest(self, st, u)
    i = -1
    if type(i_obj) is int and v.fast:
        i = PyLong_AsLongLongAndOverflow(i_obj, &overflow)
        if overflow:
            i = -1
    if 0 <= i < v.n_props:
        p = (<tuple>v.props)[i]
    else:
        p = st.propensities[i_obj]
    epoch = v.epoch
    store = c.store
    codes = store.segment_codes(segment) if segment else ()
    if type(store) is _memory_store:  # (a C call unless its method was replaced)
        seq = expose_decision_call(store, unit, i_obj, p, epoch, codes, now, tag)
    else:  # another store, a subclass: its method
        seq = store.expose_decision(unit, i_obj, p, epoch, codes, now, tag)
    prefix = c.prefix
    sn = -1
    if type(prefix) is str and type(seq) is int:
        sn = PyLong_AsLongLongAndOverflow(seq, &overflow)
        if overflow:
            sn = -1
    if sn >= 0:
        decision_id = hex_id(<str>prefix, <unsigned long long>sn)  # (its digits written in C)
    else:
        decision_id = prefix + format(seq, "x")
    names, models = c.names, c.models
    if (type(names) is tuple and type(models) is tuple and 0 <= i < len(<tuple>names)
            and i < len(<tuple>models)):  # (i: i_obj's value, a valid index of both)
        name, model = (<tuple>names)[i], (<tuple>models)[i]
    else:
        name, model = names[i_obj], models[i_obj]
    decision = decision_of(decision_id, name, model, unit, p, epoch, "bandit", now,
                           segment if type(segment) is tuple else tuple(segment))
    Py_INCREF(seq)
    seq_out[0] = <PyObject*>seq
    return decision


def new_core(router):
    """The router's :class:`BanditCore` (built once, at the end of its ``__init__``)."""
    core = BanditCore()
    core.refresh(router)
    return core


# last: routing/bandit.py imports this module at its own end, when BanditRouter exists (and
# imported first, this module is complete before bandit.py asks it for ``route``)
from modelrouter.config.extensions import python_method
from modelrouter.routing.bandit import BanditRouter as _BanditRouter
from modelrouter.routing.bandit import BanditState as _BanditState
from modelrouter.store.memory import MemoryStore as _MemoryStore

_bandit_router = _BanditRouter
_bandit_state = _BanditState
_memory_store = _MemoryStore
_draw_py = _BanditRouter.__dict__["_draw"]
_route_py = python_method(_BanditRouter, "route")
set_bandit_route(route_call)  # the experiment's compiled route calls it in C from now on
