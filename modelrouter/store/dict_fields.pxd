# Header only (no module): an object's instance dict and a one-entry cache of some of its
# values, for the compiled twins that read an object's attributes from C (store/hot_c.pyx,
# store/decisions_c.pyx, routing/bandit_c.pyx). A generic attribute read from C costs ~220
# instructions, a dict lookup ~100; the cache, valid while the dict's version tag (PEP 509: a
# new, globally unique number after every change of the dict; CPython < 3.12) is the one seen
# when it was filled, costs a comparison. The values are borrowed from the unchanged dict: take
# them (``<object>``) before any Python code can run; a freed dict's address, if reused, comes
# with a new version, so nothing stale is read.
from cpython.dict cimport PyDict_GetItemWithError
from cpython.exc cimport PyErr_Clear
from cpython.object cimport Py_TYPE, PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF

cdef extern from "Python.h":
    PyObject* GenericGetDict "PyObject_GenericGetDict" (object obj, void* context)
    PyObject* TypeLookup "_PyType_Lookup" (PyTypeObject* tp, object name)

cdef extern from *:
    """
    static inline unsigned long long modelrouter_dict_version(PyObject* d) {
    #if PY_VERSION_HEX < 0x030C0000
        return (unsigned long long)((PyDictObject*)d)->ma_version_tag;
    #else
        (void)d;
        return 0;  /* deprecated from 3.12: no cache, every read is a lookup */
    #endif
    }
    """
    unsigned long long dict_version "modelrouter_dict_version" (object d)


ctypedef struct Fields:
    size_t dict_id
    unsigned long long version
    PyObject* values[4]


cdef inline object instance_dict(object obj):
    """``obj``'s ``__dict__`` if it has one (a dict), else None; never raises."""
    cdef PyObject* found = GenericGetDict(obj, NULL)  # (a new reference)
    if found == NULL:  # no __dict__: its AttributeError dropped
        PyErr_Clear()
        return None
    d = <object>found
    Py_DECREF(d)  # (the cast took a reference of its own)
    return d if type(d) is dict else None


cdef inline void read_fields(Fields* f, dict d, tuple names) noexcept:
    """``f.values[i]``: ``d[names[i]]`` or NULL when absent (at most 4 names, all str), read
    again unless ``f`` holds this dict at its current version."""
    cdef unsigned long long version = dict_version(d)
    cdef Py_ssize_t i
    if version != 0 and version == f.version and f.dict_id == <size_t><PyObject*>d:
        return
    for i in range(len(names)):
        f.values[i] = PyDict_GetItemWithError(d, names[i])  # (str keys: never an error)
    f.dict_id, f.version = <size_t><PyObject*>d, version


cdef inline object field_or_attr(PyObject* found, object obj, str name):
    """The value read from the instance dict, else the generic read of ``obj.<name>`` (a class
    attribute, or its AttributeError)."""
    return getattr(obj, name) if found == NULL else <object>found


cdef inline object twin_dict(object obj, object twin, str name, Fields* f, tuple names,
                             Py_ssize_t at):
    """``obj``'s instance dict when ``obj.<name>(...)`` would call ``twin``: its class's
    ``name`` (the type's own lookup, through its cache) is ``twin`` and the dict, read into
    ``f`` by ``names`` (``name`` at index ``at``), has no ``name`` of its own; else None (the
    caller then makes the method's call). For the compiled twins that call each other in C."""
    if TypeLookup(Py_TYPE(obj), name) != <PyObject*>twin:
        return None
    d = instance_dict(obj)
    if d is None:
        return None
    read_fields(f, <dict>d, names)
    return d if f.values[at] == NULL else None
