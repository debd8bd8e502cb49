# The C interface of store/hot_c.pyx, for the compiled routing twin (routing/experiment_c.pyx).
from cpython.array cimport array


cdef class FastLock:
    cdef void* _lock
    cdef bint _held
    cdef Py_ssize_t _waiters
    cdef long _reset_in  # the process whose after_fork reset this lock last (0: none)
    cdef object __weakref__
    cdef void take(self) noexcept
    cdef void give(self) noexcept
    cdef int _enter(self) except -1
    cdef bint _handed(self) noexcept
    cdef int _wait(self, long long micros, bint intr) except -1


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
    cdef object _palloc, _props, _epoch  # the allocation whose propensities, epoch are cached
    cdef object choose(self, object alloc, double u)


# ``bucket(unit)`` as a C call (routing/assignment_c.pyx: ``bucket_of``), or NULL
ctypedef double (*BucketFn)(object bucket, object unit) except? -1.0

cdef object expose(UnitPath p, object store, object unit, object bucket, BucketFn bucket_c,
                   object alloc, object segment, object now, long long* seq_out)


cdef inline Py_ssize_t bisect_right_d(array a, double x) noexcept:
    """``bisect.bisect_right(a, x)`` on a sorted ``array('d')``: the allocation layouts'
    search (``UnitPath.choose``; the bandit's ``Weights.choose`` in routing/bandit_c.pyx)."""
    cdef Py_ssize_t lo = 0, hi = len(a), mid
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a.data.as_doubles[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ``store.expose_decision(...)`` as a C call where the store's method is the compiled one (the
# bandit's compiled route, routing/bandit_c.pyx)
cdef object expose_decision_call(object store, object unit, object variant, object propensity,
                                 object epoch, object segment, object now, object tag)
