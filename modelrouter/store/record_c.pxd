# The C interface of store/record_c.pyx, for the compiled feedback twin (routing/feedback_c.pyx).
from cpython.object cimport PyObject

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1
    object PyObject_GenericGetDict(object obj, void* context)

# An instance dict's version tag (PEP 509): a new, globally unique number after every change of
# the dict; both record twins key their one-entry attribute caches on it.
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


cdef object record_seq_c(object store, dict d, object seq, object metric, object value,
                         object window)
cdef object record_seq_call(object store, dict d, object seq, object metric, object value)
