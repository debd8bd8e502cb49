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


# The journal's typed entries (AutoJournal.typed, store/journal.py): what the compiled middleware
# appends for a finished request (asgi/middleware_c.pyx), a C record in a buffer the journal owns
# instead of a tuple, an int and a float in a list; the compiled fold reads them before the
# list's entries. Appended with the GIL held and no Python code between the check and the
# write, so an append is atomic as list.append is.
ctypedef struct Entry:
    long long seq
    double latency
    double error


cdef class EntryBuffer:
    cdef Entry* items  # n entries, room for cap; NULL until the first append
    cdef Py_ssize_t n, cap
    cdef Entry* spare  # the buffer of the last fold, reused by the next (or NULL)
    cdef Py_ssize_t spare_cap
    cdef int grow(self) except -1


cdef inline int push_entry(EntryBuffer b, long long seq, double latency,
                           double error) except -1:
    """Append one entry (O(1) amortised; the buffer doubles when full)."""
    if b.n >= b.cap:
        b.grow()
    b.items[b.n].seq = seq
    b.items[b.n].latency = latency
    b.items[b.n].error = error
    b.n += 1
    return 0
