# The C interface of store/columns_c.pyx, for the compiled decision tracker (store/decisions_c.pyx).
from cpython.array cimport array


from cpython.object cimport PyObject


cdef enum:
    MAX_RING_COLUMNS = 16  # ring columns ring_remember writes in C (more: the Python method)


ctypedef struct RingColumn:
    PyObject* col  # the column's array, borrowed from its (col, fill) tuple
    double d  # its fill, read once: a 'd' column's
    signed char b  # a 'b' column's
    bint is_d


# The columns ring_remember last checked, for a caller that remembers into one ring many times
# (the decision tracker's compiled open): ``pairs`` holds the ring's (col, fill) tuples as they
# were, so none of them can be freed and another take its address; while the ring's list holds
# exactly these tuples, their arrays and fills (immutable parts of immutable tuples) are known,
# and only what can change (an array's length, a buffer it exports) is checked again.
cdef class ColumnCache:
    cdef list pairs  # None until the first successful check
    cdef RingColumn cols[MAX_RING_COLUMNS]


# PendingRing.remember (store/ring.py) in C, shared by the ring's compiled twin and the tracker's
# compiled open: the slot, or -1 having written nothing (the caller then runs the Python method).
# ``cache``: a ColumnCache of this ring's columns, or None.
cdef Py_ssize_t ring_remember(array seq_a, array time_a, array row_a, list columns,
                              long long cap, long long s, double now, long long r,
                              ColumnCache cache) except -2


# DecisionTracker.apply (store/decisions_c.pyx) as a C call for the journal fold's decisions:
# decisions_c cimports this module, so it registers its function here when it is imported (the
# fold calls the method while none is registered). The function checks that the tracker's
# method is still the compiled twin, and calls the method otherwise.
ctypedef object (*TrackerApply)(object tracker, object seq, object m, object value)
cdef void set_tracker_apply(TrackerApply fn) noexcept
# The same for the fold's typed entries: the decision number and the value as C numbers.
ctypedef int (*TrackerApplyTyped)(object tracker, long long seq, object m,
                                  double value) except -1
cdef void set_tracker_apply_typed(TrackerApplyTyped fn) noexcept


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


# store.rows.add_to_pair on 'd' arrays (a unit's x and y columns, its group's row), shared by the
# compiled add_to_pair and the tracker's compiled apply (store/decisions_c.pyx): 1 when written,
# 0 having written nothing when an index is out of range or an array holds no doubles (the caller
# then runs the Python twin's lines). ``any_`` is tested after the checks and before the first
# write, where the Python twin tests it, so an exception from it leaves everything unchanged; a
# truth test that runs Python code may resize the arrays, so the indices are checked again after
# it (IndexError, as the twin's assignment would raise, and nothing written).
cdef inline int _pair_resized(array xa, array ya, Py_ssize_t i, array r, Py_ssize_t b,
                              double old_x, double old_y, double new_x,
                              double new_y) except -1:
    """pair_to_row's writes, one by one as the twin's lines make them, after the truth test
    resized an array: each write checked, the IndexError where the twin's would fail."""
    cdef double* rd
    if i >= len(xa):
        raise IndexError("array assignment index out of range")
    xa.data.as_doubles[i] = new_x
    if i >= len(ya):
        raise IndexError("array assignment index out of range")
    ya.data.as_doubles[i] = new_y
    for k, d in enumerate((new_x - old_x, 1.0, new_x * new_x - old_x * old_x,
                           new_y * new_y - old_y * old_y, new_x * new_y - old_x * old_y)):
        if b + k >= len(r):
            raise IndexError("array index out of range")
        rd = r.data.as_doubles
        rd[b + k] = rd[b + k] + <double>d
    return 1


cdef inline int pair_to_row(array xa, array ya, Py_ssize_t i, array r, Py_ssize_t m, double v,
                            object any_) except -1:
    cdef Py_ssize_t b = 1 + 5 * m
    cdef double old_x, old_y, new_x, new_y
    cdef double* rd
    if not (xa.ob_descr.typecode == b"d" and ya.ob_descr.typecode == b"d"
            and r.ob_descr.typecode == b"d" and 0 <= i < len(xa) and i < len(ya)
            and 0 <= m < (<Py_ssize_t>1 << 40) and b + 4 < len(r)):
        return 0
    old_x, old_y = xa.data.as_doubles[i], ya.data.as_doubles[i]
    if any_:
        new_x = v if v > old_x else old_x  # max(old_x, value)
    else:
        new_x = old_x + v
    new_y = old_y + 1.0
    if i >= len(xa) or i >= len(ya) or b + 4 >= len(r):  # resized by the truth test's code
        return _pair_resized(xa, ya, i, r, b, old_x, old_y, new_x, new_y)
    xa.data.as_doubles[i], ya.data.as_doubles[i] = new_x, new_y
    rd = r.data.as_doubles
    rd[b] = rd[b] + (new_x - old_x)
    rd[b + 1] = rd[b + 1] + 1.0
    rd[b + 2] = rd[b + 2] + (new_x * new_x - old_x * old_x)
    rd[b + 3] = rd[b + 3] + (new_y * new_y - old_y * old_y)
    rd[b + 4] = rd[b + 4] + (new_x * new_y - old_x * old_y)
    return 1
