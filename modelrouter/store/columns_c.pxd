# The C interface of store/columns_c.pyx, for the compiled decision tracker (store/decisions_c.pyx).
from cpython.array cimport array


# PendingRing.remember (store/ring.py) in C, shared by the ring's compiled twin and the tracker's
# compiled open: the slot, or -1 having written nothing (the caller then runs the Python method).
cdef Py_ssize_t ring_remember(array seq_a, array time_a, array row_a, list columns,
                              long long cap, long long s, double now, long long r) except -2


# DecisionTracker.apply (store/decisions_c.pyx) as a C call for the journal fold's decisions:
# decisions_c cimports this module, so it registers its function here when it is imported (the
# fold calls the method while none is registered). The function checks that the tracker's
# method is still the compiled twin, and calls the method otherwise.
ctypedef object (*TrackerApply)(object tracker, object seq, object m, object value)
cdef void set_tracker_apply(TrackerApply fn) noexcept
