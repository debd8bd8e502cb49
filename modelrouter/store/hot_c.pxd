# The C interface of store/hot_c.pyx, for the compiled routing twin (routing/experiment_c.pyx).
from cpython.array cimport array


cdef class FastLock:
    cdef void* _lock
    cdef bint _held
    cdef void take(self)
    cdef void give(self)


cdef class UnitPath:
    cdef public FastLock lock
    cdef public dict rows
    cdef public array ubucket, exposures, ring_seq, ring_time, ring_row
    cdef public object units
    cdef public list requests
    cdef public Py_ssize_t cap
    cdef public long long seq
    cdef object _alloc
    cdef array _bounds, _owners
    cdef object choose(self, object alloc, double u)


cdef tuple expose(UnitPath p, object store, object unit, object bucket, object alloc,
                  object segment, object now)
