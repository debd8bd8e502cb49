# cython: language_level=3, boundscheck=False, wraparound=False, binding=True
"""Compiled twin of :meth:`Experiment.route_checked <modelrouter.routing.experiment.Experiment.route_checked>`.

The same steps in the same order (``routing/experiment.py`` installs :func:`route_checked` as
the method when it was built; ``config/extensions.py``): one read of the allocation, the
bandit's own router in bandit mode, the store's ``expose_unit`` for a unit, and
``Experiment._route_other`` (Python) for a request without a unit id or at request level.

What the method reads from the experiment it reads from a :class:`RouteCore` (C fields), which
the experiment builds once (``Experiment._core``) and refreshes whenever one of its attributes
is set (``Experiment.__setattr__``; a forked child's new decision-id prefix, say). With the
memory store's compiled path (store/hot_c.pyx) the exposure is a C call; in bandit mode, so is
the compiled ``BanditRouter.route`` (registered by routing/bandit_c.pyx:
:func:`set_bandit_route`).
"""

from time import time as _wall_clock

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_DecodeASCII

from modelrouter.routing.assignment import Allocation
from modelrouter.routing.decision import Decision
from modelrouter.routing.assignment_c cimport bucket_of
from modelrouter.routing.clocks cimport wall_now
from modelrouter.store.hot_c cimport UnitPath, expose

from modelrouter.store.hot_c import expose_unit as _hot_expose_unit

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    Py_ssize_t PyLong_AsSsize_t(object o) except? -1

cdef extern from *:
    """
    /* A tuple subclass's instance of n items, unfilled: tuple.__new__'s own allocation
       (tuple_subtype_new), without the argument tuple it copies from. */
    static PyObject *modelrouter_tuple_alloc(PyObject *cls, Py_ssize_t n) {
        return ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, n);
    }
    """
    object tuple_alloc "modelrouter_tuple_alloc" (object cls, Py_ssize_t n)

cdef extern from *:
    """
    /* The lower-case hex digits of v written backwards from end; their number (1-16). */
    static Py_ssize_t modelrouter_hex_digits(char *end, unsigned long long v) {
        char *p = end;
        do {
            *--p = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v);
        return end - p;
    }
    """
    Py_ssize_t hex_digits "modelrouter_hex_digits" (char* end, unsigned long long v) noexcept

from libc.string cimport memcpy

cdef BanditRoute _bandit_route = NULL  # set by routing/bandit_c.pyx when it is imported


cdef inline void _put(object out, Py_ssize_t i, object item) noexcept:
    Py_INCREF(item)  # (SET_ITEM takes the reference)
    PyTuple_SET_ITEM(out, i, item)


cdef object decision_of(object decision_id, object variant, object model, object unit,
                        object propensity, object epoch, object mode, object issued_at,
                        object segment):
    """``tuple.__new__(Decision, (decision_id, ..., mode, issued_at, True, segment))`` (a
    counted decision; NamedTuple's Python ``__new__`` skipped): what ``tuple.__new__`` does
    (the type's own allocation, the items set) without a tuple of the fields to copy from."""
    out = tuple_alloc(Decision, 10)
    _put(out, 0, decision_id)
    _put(out, 1, variant)
    _put(out, 2, model)
    _put(out, 3, unit)
    _put(out, 4, propensity)
    _put(out, 5, epoch)
    _put(out, 6, mode)
    _put(out, 7, issued_at)
    _put(out, 8, True)
    _put(out, 9, segment)
    return out


cdef inline object _at(object seq, object index):
    """``seq[index]``: a tuple's item read in C for an int index within its bounds."""
    cdef Py_ssize_t i
    if type(seq) is tuple and type(index) is int:
        i = PyLong_AsSsize_t(index)
        if 0 <= i < len(<tuple>seq):
            return <object>PyTuple_GET_ITEM(seq, i)
    return seq[index]


cdef str decision_id_of(str prefix, object seq):
    """``f"{prefix}{seq:x}"`` for a decision number (its hex digits written in C)."""
    cdef long long n = seq
    if n < 0:
        return f"{prefix}{seq:x}"
    return hex_id(prefix, <unsigned long long>n)


cdef str hex_id(str prefix, unsigned long long v):
    """``f"{prefix}{v:x}"``: with an ASCII prefix (the usual one), the id written into one
    new string."""
    cdef char buf[16]
    cdef Py_ssize_t digits = hex_digits(buf + 16, v), k
    cdef char* out
    if type(prefix) is not str or not PyUnicode_IS_COMPACT_ASCII(prefix):
        return prefix + PyUnicode_DecodeASCII(buf + 16 - digits, digits, NULL)
    k = PyUnicode_GET_LENGTH(prefix)
    result = PyUnicode_New(k + digits, 127)
    out = <char*>PyUnicode_DATA(result)
    memcpy(out, PyUnicode_DATA(prefix), k)
    memcpy(out + k, buf + 16 - digits, digits)
    return result


cdef class RouteCore:
    """What ``route_checked`` reads (fields: experiment_c.pxd)."""

    def refresh(self, experiment):
        """Read every field from the experiment again (it calls this when an attribute of its
        changes: a forked child's decision-id prefix, a test's replaced clock)."""
        d = experiment.__dict__
        self.state, self.clock, self.bandit = d.get("state"), d.get("clock"), d.get("bandit")
        cdef double now
        self.wall = self.clock is _wall_clock and wall_now(&now) == 0  # read in C then
        self.store = d.get("store")
        self.expose, self.bucket = d.get("_expose_unit"), d.get("_bucket")
        self.route_other = experiment._route_other
        path = getattr(self.store, "_path", None)
        # the exposure as a C call only while the experiment's _expose_unit is hot_c's own,
        # bound to this store (a replaced _expose_unit is called, as the Python method does)
        expose = self.expose
        own = (getattr(expose, "__func__", None) is _hot_expose_unit
               and getattr(expose, "__self__", None) is self.store)
        self.path = path if own and isinstance(path, UnitPath) else None
        self.prefix = d.get("_prefix")
        self.names, self.models = d.get("names"), d.get("models")
        self.unit_level = bool(d.get("_unit_level"))
        self.tick = d.get("tick")  # the feedback hook, read by the middleware's twin
        self._alloc = None  # (the layout cache below is read again)
        # route_checked replaced on the instance: the middleware calls that one
        self.overridden = "route_checked" in d

    cpdef tuple route(self, object unit, object segment=()):
        """``route_checked(unit, segment)``: ``(decision, seq)``."""
        cdef PyObject* seq = NULL
        decision = self.route_into(unit, segment, &seq)
        out = (decision, <object>seq)
        Py_XDECREF(seq)
        return out

    cdef object route_into(self, object unit, object segment, PyObject** seq_out):
        """:meth:`route`'s decision; its ``seq`` (a new reference) in ``*seq_out``: no tuple
        for the middleware's twin, which takes both."""
        cdef long long seq_c = 0
        cdef bint c_seq = False  # seq_c holds the decision's number (its id written from it)
        alloc = self.state.allocation  # one read: the whole decision uses one allocation
        if type(alloc) is not Allocation:  # bandit mode: a BanditAllocation (routing/bandit.py)
            if _bandit_route != NULL:  # self.bandit.route(...), in C where it is the twin
                return _bandit_route(self.bandit, unit, segment, alloc, seq_out)
            return split_decision(self.bandit.route(unit, segment, alloc), seq_out)
        cdef double wall
        if self.wall and wall_now(&wall) == 0:  # time.time(), read in C
            now = wall
        else:
            now = self.clock()
        if unit is not None and self.unit_level:  # the hot path: a split unit
            codes = self.store.segment_codes(segment) if segment else ()
            path = self.path  # (one read: a refresh from another thread may change it)
            if path is not None:
                i = expose(path, self.store, unit, self.bucket, bucket_of, alloc, codes, now,
                           &seq_c)
                seq = seq_c
                c_seq = seq_c >= 0
            else:
                seq, i = self.expose(unit, self.bucket, alloc, codes, now)
            if alloc is not self._alloc:  # an allocation is never changed once in force:
                # its propensities and epoch are read once (as UnitPath caches its layout)
                self._props, self._epoch = alloc.propensities, alloc.epoch
                self._alloc = alloc
            prefix = self.prefix
            decision = decision_of(
                hex_id(<str>prefix, <unsigned long long>seq_c)
                if c_seq and type(prefix) is str
                else decision_id_of(<str>prefix, seq) if type(prefix) is str
                else f"{prefix}{seq:x}",
                _at(self.names, i), _at(self.models, i), unit, _at(self._props, i),
                self._epoch, "ab", now, segment if type(segment) is tuple else tuple(segment))
            Py_INCREF(seq)
            seq_out[0] = <PyObject*>seq
            return decision
        return split_decision(self.route_other(unit, segment, alloc, now), seq_out)


cdef object split_decision(object pair, PyObject** seq_out):
    """``decision, seq = pair`` (the unpacking's own errors): the decision; ``seq`` (a new
    reference) in ``*seq_out``."""
    decision, seq = pair
    Py_INCREF(seq)
    seq_out[0] = <PyObject*>seq
    return decision


cdef void set_bandit_route(BanditRoute fn) noexcept:
    """Register the compiled ``BanditRouter.route``'s C call (see experiment_c.pxd)."""
    global _bandit_route
    _bandit_route = fn


def route_checked(self, unit, segment=()):
    """:meth:`route` for a unit id already validated by the same rule (the ASGI readers
    check it as they read it): the request path does not check it twice."""
    return (<RouteCore?>self._core).route(unit, segment)


def new_core(experiment):
    """The experiment's :class:`RouteCore` (built once, at the end of its ``__init__``)."""
    core = RouteCore()
    core.refresh(experiment)
    return core
