# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twin of :meth:`MemoryStore.record_seq <modelrouter.store.memory.MemoryStore.record_seq>`.

``store/memory.py`` installs :func:`record_seq` as the method when it was built
(``config/extensions.py``); the compiled ``Experiment.record`` (``routing/feedback_c.pyx``) calls
:func:`record_seq_c` directly when the store's method is this one.

The same steps in the same order as the Python method, under the same lock: the ring check of
the decision (its number in its slot, then the attribution window with one call of the store's
clock), ``ring.slot_of`` (its precise UnknownDecisionError) when that fails, then the unit's
``(x, y)`` of the metric (a max for "any" metrics), then ``DecisionTracker.apply`` in bandit
mode. What the method reads from the store it reads from the instance's ``__dict__`` (a dict
lookup, cheaper than a generic attribute read from C; cached while the dict's version tag is
unchanged, re-checked after every step that may run Python code: the lock's wait, the clock)
and from the store's hot-path state (``_path``: the lock's twin, the ring's arrays and the unit
table, the same objects the store holds). Anything else -- arguments of other types, a request-level store, a row the columns do
not hold, a store whose ``__init__`` never ran -- runs the Python method's own lines (before
anything changed: the Python method itself; after the window check: its ``_add_locked``), so
errors, float rounding and the order of every read and write are the Python method's.
"""

from cpython.array cimport array
from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject

from modelrouter.store.hot_c cimport FastLock, UnitPath


# PyLong_AsLongLongAndOverflow, PyObject_GenericGetDict and dict_version: record_c.pxd

cdef object _python = None  # MemoryStore's Python method (set by the first call)

# What the last store's instance dict held, valid while that dict's version tag (PEP 509: a
# new, globally unique number after every change of the dict) is the one seen then: every
# read is then the value a lookup would return (Python < 3.12; 0: nothing cached). Borrowed
# references: the unchanged dict holds them, and a freed dict's address, if reused, comes with
# a new version, so nothing is kept alive here and nothing stale is read.
cdef size_t _dict_id = 0
cdef unsigned long long _version = 0
cdef PyObject* _path
cdef PyObject* _lock
cdef PyObject* _max_pending
cdef PyObject* _clock
cdef PyObject* _window
cdef PyObject* _flags
cdef PyObject* _level
cdef PyObject* _decisions
cdef bint _own_method = False  # no ``record_seq`` in the instance dict


cdef object _python_record_seq():
    global _python
    if _python is None:
        from modelrouter.config.extensions import python_method
        from modelrouter.store.memory import MemoryStore
        _python = python_method(MemoryStore, "record_seq")
    return _python


cdef inline object _get(dict d, str name):
    """``d[name]``, or None when absent (the callers then run the Python method)."""
    cdef PyObject* found = PyDict_GetItemWithError(d, name)
    if found == NULL:
        return None
    return <object>found


cdef inline object _attr(dict d, object obj, str name):
    """``obj.<name>``: from the instance dict when there, else by the generic attribute read
    (a class attribute, or the Python method's own AttributeError)."""
    cdef PyObject* found = PyDict_GetItemWithError(d, name)
    if found == NULL:
        return getattr(obj, name)
    return <object>found


cdef dict _dict_of(object obj):
    """The instance's ``__dict__`` (None when it has none)."""
    try:
        d = PyObject_GenericGetDict(obj, NULL)
    except AttributeError:
        return None
    return d if type(d) is dict else None


cdef bint _cached(dict d, unsigned long long version):
    return version != 0 and version == _version and <size_t><PyObject*>d == _dict_id


cdef void _fill(dict d, unsigned long long version):
    """Cache the instance dict's values (every one present: else nothing is cached)."""
    global _dict_id, _version, _path, _lock, _max_pending, _clock, _window, _flags, _level
    global _decisions, _own_method
    _version = 0
    if version == 0:
        return
    _path = PyDict_GetItemWithError(d, "_path")
    _lock = PyDict_GetItemWithError(d, "_lock")
    _max_pending = PyDict_GetItemWithError(d, "max_pending")
    _clock = PyDict_GetItemWithError(d, "clock")
    _window = PyDict_GetItemWithError(d, "attribution_window")
    _flags = PyDict_GetItemWithError(d, "any_flags")
    _level = PyDict_GetItemWithError(d, "unit_level")
    _decisions = PyDict_GetItemWithError(d, "_decisions")
    if (_path == NULL or _lock == NULL or _max_pending == NULL or _clock == NULL
            or _window == NULL or _flags == NULL or _level == NULL or _decisions == NULL):
        return
    _own_method = PyDict_GetItemWithError(d, "record_seq") == NULL
    _dict_id, _version = <size_t><PyObject*>d, version


cdef object record_seq_call(object store, dict d, object seq, object metric, object value):
    """``store.record_seq(seq, metric, value)`` for a store whose class method is this twin:
    as a C call, unless the instance holds a ``record_seq`` of its own."""
    cdef unsigned long long version = dict_version(d)
    if not _cached(d, version):
        _fill(d, version)
    if _cached(d, version) and _own_method or PyDict_GetItemWithError(d, "record_seq") == NULL:
        return record_seq_c(store, d, seq, metric, value, True)
    return store.record_seq(seq, metric, value)


def record_seq(self, seq, metric, value, *, window=True):
    """Add a validated value of metric index ``metric`` to the decision ``seq``: see
    ``MemoryStore.record_seq`` (store/memory.py), the Python twin."""
    d = _dict_of(self)
    if d is None:
        return _python_record_seq()(self, seq, metric, value, window=window)
    return record_seq_c(self, d, seq, metric, value, window)


cdef object record_seq_c(object store, dict d, object seq, object metric, object value,
                         object window):
    """:func:`record_seq` on the store's instance dict ``d`` (also called from the compiled
    ``Experiment.record``)."""
    cdef long long s, m, cap, slot, row
    cdef int overflow = 0
    cdef double v, t
    cdef FastLock lock
    cdef UnitPath p
    cdef array rs, rt, rr, xs, ys
    cdef unsigned long long version = dict_version(d)
    if not _cached(d, version):
        _fill(d, version)
    if _cached(d, version):
        path, lock_o, max_pending = <object>_path, <object>_lock, <object>_max_pending
    else:
        path, lock_o, max_pending = _get(d, "_path"), _get(d, "_lock"), _get(d, "max_pending")
    if (type(seq) is not int or type(metric) is not int or type(value) is not float
            or (window is not True and window is not False) or type(path) is not UnitPath
            or type(lock_o) is not FastLock or type(max_pending) is not int):
        return _python_record_seq()(store, seq, metric, value, window=window)
    s = PyLong_AsLongLongAndOverflow(seq, &overflow)
    if not overflow:
        m = PyLong_AsLongLongAndOverflow(metric, &overflow)
    if not overflow:
        cap = PyLong_AsLongLongAndOverflow(max_pending, &overflow)
    p = <UnitPath>path
    if (overflow or s < 0 or m < 0 or cap < 1 or p.ring_seq is None or p.ring_time is None
            or p.ring_row is None):  # the Python method's own answer (slot_of's error...)
        return _python_record_seq()(store, seq, metric, value, window=window)
    v = value
    slot = s % cap
    lock = <FastLock>lock_o
    lock.take()
    try:
        rs, rt, rr = p.ring_seq, p.ring_time, p.ring_row
        if slot >= len(rs) or rs.data.as_longlongs[slot] != s:  # unknown, evicted
            store._add_locked(seq, store.ring.slot_of(seq, window), metric, value)
            return None
        cached = _cached(d, dict_version(d))  # (the lock's wait may have let others run)
        if window:
            now = (<object>_clock if cached else _attr(d, store, "clock"))()
            if slot >= len(rt):  # the array's own IndexError
                expired = now - store._ring_time[slot] > _attr(d, store, "attribution_window")
            else:
                t = rt.data.as_doubles[slot]
                cached = _cached(d, dict_version(d))  # (the clock may have run Python code)
                horizon = <object>_window if cached else _attr(d, store, "attribution_window")
                if type(now) is float and type(horizon) is float:
                    expired = (<double>now - t) > <double>horizon
                else:
                    expired = now - t > horizon
            if expired:
                store._add_locked(seq, store.ring.slot_of(seq, window), metric, value)
                return None
        cached = _cached(d, dict_version(d))  # (the clock may have run Python code)
        units = p.units
        flags = <object>_flags if cached else _attr(d, store, "any_flags")
        level = <object>_level if cached else _attr(d, store, "unit_level")
        if (slot >= len(rr) or level is not True or type(flags) is not tuple
                or m >= len(<tuple>flags) or units is None):
            store._add_locked(seq, slot, metric, value)  # request level: add_to_pair
            return None
        row = rr.data.as_longlongs[slot]
        flag = (<tuple>flags)[m]
        xcols, ycols = units.x, units.y
        if (type(xcols) is not list or type(ycols) is not list or m >= len(<list>xcols)
                or m >= len(<list>ycols) or (flag is not True and flag is not False)):
            store._add_locked(seq, slot, metric, value)
            return None
        xo, yo = (<list>xcols)[m], (<list>ycols)[m]
        if type(xo) is not array or type(yo) is not array:
            store._add_locked(seq, slot, metric, value)
            return None
        xs, ys = xo, yo
        if (xs.ob_descr.typecode != b"d" or ys.ob_descr.typecode != b"d" or row < 0
                or row >= len(xs) or row >= len(ys)):
            store._add_locked(seq, slot, metric, value)
            return None
        if flag:
            if v > xs.data.as_doubles[row]:
                xs.data.as_doubles[row] = v
        else:
            xs.data.as_doubles[row] += v
        ys.data.as_doubles[row] += 1.0
        if _cached(d, dict_version(d)):
            decisions = <object>_decisions
        else:
            decisions = _attr(d, store, "_decisions")
        if decisions is not None:
            decisions.apply(seq, metric, value)
    finally:
        lock.give()
    return None
