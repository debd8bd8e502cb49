# The C interface of store/record_c.pyx, for the compiled feedback twin (routing/feedback_c.pyx).
from cpython.object cimport PyObject

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1
    object PyObject_GenericGetDict(object obj, void* context)

# An instance dict's version tag (PEP 509): both record twins key their one-entry attribute
# caches on it (store/dict_fields.pxd).
from modelrouter.store.dict_fields cimport dict_version


cdef object record_seq_c(object store, dict d, object seq, object metric, object value,
                         object window)
cdef object record_seq_call(object store, dict d, object seq, object metric, object value)
