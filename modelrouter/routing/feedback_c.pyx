# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twin of :meth:`Experiment.record <modelrouter.routing.experiment.Experiment.record>`.

``routing/experiment.py`` installs :func:`record` as the method when it was built
(``config/extensions.py``). The same steps in the same order as the Python method, for the
common case: the metric's ``(index, spec, low, high, tiny)`` from ``_metric_info``, a plain
float or int in the metric's range (the same comparisons), a decision id (a ``str`` or a
``Decision``) parsed as ``Experiment.seq_of`` parses it (the process prefix, then 1 to 15 ASCII
hex digits without a leading zero), the store's ``record_seq`` (the memory store's compiled
twin, ``store/record_c.pyx``, as a C call; any other store's method, e.g. Redis, as a call),
then the feedback hook ``tick``. What it reads from the experiment it reads from the
instance's ``__dict__``, cached while the dict's version tag (PEP 509) is unchanged (the hook
is re-read when the store's call may have changed it), as is the metric's entry.

Everything else runs the Python method itself, before anything changed: an unknown metric, a
value that is not a plain float or int in range (bool, numpy scalars, NaN, 1e300, huge ints,
str: ``check_value`` and its InvalidValueError), a foreign or malformed decision id (its
UnknownDecisionError), a decision number past 15 hex digits, a ``seq_of`` replaced by a
subclass or on the instance, an experiment whose ``__init__`` never ran. Unknown, evicted and
expired decisions are the store's answer (its ``slot_of``), as in the Python method.
"""

from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport Py_TYPE, PyObject, PyTypeObject

from modelrouter.routing.decision import Decision
from modelrouter.store.dict_fields cimport dict_version
from modelrouter.store.record_c cimport (PyLong_AsLongLongAndOverflow, PyObject_GenericGetDict,
                                        record_seq_call)

from modelrouter.store.record_c import record_seq as _memory_record_seq


cdef extern from "Python.h":
    PyObject* _PyType_Lookup(PyTypeObject* tp, object name)
    bint PyUnicode_IS_COMPACT_ASCII(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    void* PyUnicode_DATA(object s)
    int PyUnicode_READY(object s) except -1

cdef extern from "string.h":
    int memcmp(const void* a, const void* b, size_t n)

cdef object _python = None  # Experiment's Python record (set by the first call)
cdef object _seq_of = None  # Experiment's seq_of (Python), which the parse here replicates
cdef long long _EXACT = 1LL << 53  # ints up to this magnitude convert to float exactly

# What the last experiment's instance dict held, valid while that dict's version tag (PEP 509:
# a new, globally unique number after every change of the dict) is the one seen then (see
# store/record_c.pyx; Python < 3.12, 0: nothing cached). Borrowed references, as there.
cdef size_t _dict_id = 0
cdef unsigned long long _version = 0
cdef PyObject* _info_map  # _metric_info
cdef PyObject* _prefix
cdef PyObject* _store
cdef PyObject* _tick
# the last metric looked up in the last _metric_info (its address and version) and its entry
cdef size_t _map_id = 0
cdef unsigned long long _map_version = 0
cdef object _metric = None  # held: its address is not reused while it is compared
cdef PyObject* _info


cdef bint _cached(dict d, unsigned long long version):
    return version != 0 and version == _version and <size_t><PyObject*>d == _dict_id


cdef void _fill(dict d, unsigned long long version):
    """Cache the instance dict's values (all present, no ``seq_of`` of the instance's own)."""
    global _dict_id, _version, _info_map, _prefix, _store, _tick
    _version = 0
    if version == 0:
        return
    _info_map = PyDict_GetItemWithError(d, "_metric_info")
    _prefix = PyDict_GetItemWithError(d, "_prefix")
    _store = PyDict_GetItemWithError(d, "store")
    _tick = PyDict_GetItemWithError(d, "tick")
    if (_info_map == NULL or _prefix == NULL or _store == NULL or _tick == NULL
            or PyDict_GetItemWithError(d, "seq_of") != NULL):
        return
    _dict_id, _version = <size_t><PyObject*>d, version


cdef void _bind() except *:
    global _python, _seq_of
    from modelrouter.config.extensions import python_method
    from modelrouter.routing.experiment import Experiment
    _python = python_method(Experiment, "record")
    _seq_of = Experiment.__dict__["seq_of"]


cdef inline PyObject* _get(dict d, str name):
    return PyDict_GetItemWithError(d, name)


def record(self, decision, metric, value):
    """Record ``value`` of ``metric`` for a decision (its id or the Decision itself)."""
    cdef int overflow = 0
    cdef long long x, s
    cdef double v, low, high, tiny
    cdef Py_ssize_t n, k, i
    cdef const char* text
    cdef const char* head
    cdef PyObject* found
    cdef char c
    cdef bint ok, cached
    cdef unsigned long long version, map_version
    global _map_id, _map_version, _metric, _info
    if _python is None:
        _bind()
    try:
        d = PyObject_GenericGetDict(self, NULL)
    except AttributeError:
        return _python(self, decision, metric, value)
    if type(d) is not dict or type(metric) is not str:
        return _python(self, decision, metric, value)
    version = dict_version(d)
    if not _cached(d, version):
        _fill(d, version)
    cached = _cached(d, version)
    found = _info_map if cached else _get(d, "_metric_info")
    if found == NULL or type(<object>found) is not dict:
        return _python(self, decision, metric, value)
    infos = <dict><object>found
    map_version = dict_version(infos)
    if (map_version != 0 and map_version == _map_version and _map_id == <size_t><PyObject*>infos
            and _metric is metric):
        found = _info
    else:
        found = PyDict_GetItemWithError(infos, metric)
        if found != NULL and map_version != 0:
            _map_id, _map_version, _metric, _info = (<size_t><PyObject*>infos, map_version,
                                                     metric, found)
    if found == NULL or type(<object>found) is not tuple or len(<tuple><object>found) != 5:
        return _python(self, decision, metric, value)  # unknown metric: UnknownMetricError
    info = <tuple><object>found
    index, lo, hi, ti = info[0], info[2], info[3], info[4]
    if type(lo) is not float or type(hi) is not float or type(ti) is not float:
        return _python(self, decision, metric, value)
    low, high, tiny = lo, hi, ti
    # the Python method's fast paths (in_range inlined; NaN fails every comparison)
    if type(value) is float:
        v = value
        vobj = value
    elif type(value) is int:
        x = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow or x > _EXACT or x < -_EXACT:  # float(value) rounds: the Python method
            return _python(self, decision, metric, value)
        v = <double>x
        vobj = v
    else:  # bool, numpy scalars, str...: check_value
        return _python(self, decision, metric, value)
    if not (tiny <= v <= high or v == 0.0 or low <= v <= -tiny):
        return _python(self, decision, metric, value)  # out of range: InvalidValueError
    # the decision id (a Decision's first field), parsed as seq_of does
    if type(decision) is str:
        decision_id = decision
    elif type(decision) is Decision and len(<tuple>decision) > 0:
        decision_id = (<tuple>decision)[0]
    else:
        return _python(self, decision, metric, value)
    found = _prefix if cached else _get(d, "_prefix")
    if (found == NULL or type(<object>found) is not str or type(decision_id) is not str
            or (not cached and _get(d, "seq_of") != NULL)
            or _PyType_Lookup(Py_TYPE(self), "seq_of") != <PyObject*>_seq_of):
        return _python(self, decision, metric, value)
    prefix = <str><object>found
    PyUnicode_READY(prefix)
    PyUnicode_READY(decision_id)
    if not PyUnicode_IS_COMPACT_ASCII(prefix) or not PyUnicode_IS_COMPACT_ASCII(decision_id):
        return _python(self, decision, metric, value)
    k = PyUnicode_GET_LENGTH(prefix)
    n = PyUnicode_GET_LENGTH(decision_id) - k
    if n < 1 or n > 15:  # foreign, malformed or past 15 digits: the Python method
        return _python(self, decision, metric, value)
    text = <const char*>PyUnicode_DATA(decision_id)
    head = <const char*>PyUnicode_DATA(prefix)
    if memcmp(text, head, k) != 0 or (text[k] == c'0' and n > 1):
        return _python(self, decision, metric, value)
    s = 0
    for i in range(k, k + n):
        c = text[i]
        if c'0' <= c <= c'9':
            s = s * 16 + (c - c'0')
        elif c'a' <= c <= c'f':
            s = s * 16 + (c - c'a' + 10)
        elif c'A' <= c <= c'F':
            s = s * 16 + (c - c'A' + 10)
        else:
            return _python(self, decision, metric, value)  # malformed
    seq = s
    found = _store if cached else _get(d, "store")
    if found == NULL:
        return _python(self, decision, metric, value)
    store = <object>found
    if _PyType_Lookup(Py_TYPE(store), "record_seq") == <PyObject*>_memory_record_seq:
        try:
            sd = PyObject_GenericGetDict(store, NULL)
        except AttributeError:
            sd = None
        if type(sd) is dict:
            record_seq_call(store, <dict>sd, seq, index, vobj)
        else:
            store.record_seq(seq, index, vobj)
    else:
        store.record_seq(seq, index, vobj)
    if _cached(d, dict_version(d)):  # (the store may have run Python code)
        tick = <object>_tick
    else:
        found = _get(d, "tick")
        tick = self.tick if found == NULL else <object>found
    if tick is not None:
        tick()
    return None
