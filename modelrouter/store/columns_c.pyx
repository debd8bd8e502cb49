# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twins of the memory store's column arithmetic (see ``config/extensions.py``).

- :func:`fold`: ``AutoJournal.fold`` (store/journal.py) with typed reads and writes of the
  ``array`` columns; in bandit mode the tracker's compiled ``apply`` as a C call (registered by
  store/decisions_c.pyx, :func:`set_tracker_apply`);
- :func:`remember`: ``PendingRing.remember`` (store/ring.py) through :func:`ring_remember`,
  the ring's C path (an overwrite in place or an append while the ring fills, its extra
  ``'d'`` and ``'b'`` columns filled in C), which the compiled ``DecisionTracker.open``
  (store/decisions_c.pyx) calls too (declared in columns_c.pxd);
- :func:`add_to_pair`: ``store.rows.add_to_pair``, the same float operations in C.

Each does exactly what its Python twin does, in the same order and with the same float
operations (built with ``-ffp-contract=off``: no fused multiply-add); an index the arrays do
not hold, or a value of another type, goes through the Python operations (their exceptions).
"""

from bisect import bisect_left

from cpython.array cimport array, resize_smart
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.string cimport memset

from modelrouter.store.array_exports cimport array_exports


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1

from modelrouter.store.histogram import EDGES_MS, N_SLOTS

cdef array _EDGES = array("d", EDGES_MS)
cdef Py_ssize_t _N_EDGES = len(EDGES_MS)
cdef Py_ssize_t _N_SLOTS = N_SLOTS
cdef object _Ring = None  # PendingRing and its Python remember (set at the end of this module)
cdef object _remember_py = None
cdef TrackerApply _tracker_apply = NULL  # set by store/decisions_c.pyx when it is imported


def fold(self, ring_seq, ring_row, capacity, units, hist, hist_sum, tracker=None,
         auto=(0, 0)):
    """Apply the entries present now to the unit table and histogram (caller holds the
    store lock): see ``AutoJournal.fold`` (store/journal.py), the Python twin."""
    entries = self.entries
    cdef Py_ssize_t n = len(entries)
    cdef array rs = ring_seq, rr = ring_row, hist_a = hist
    cdef array lat_x = units.lat_x, lat_y = units.lat_y, err_x = units.err_x
    cdef array err_y = units.err_y, variant = units.variant
    hsum = hist_sum
    cdef Py_ssize_t size, slot, row, lo, hi, mid, v
    cdef long long seq, cap = capacity
    cdef double latency, error
    cdef int overflow
    cdef double acc[_HELD]  # hist_sum's floats while held in C (held[v] set)
    cdef unsigned char held[_HELD]
    cdef Py_ssize_t nv
    if not n:
        return
    batch = entries[:n]
    del entries[:n]  # entries appended since the slice stay, after these
    size = len(rs)
    # the variants' latency sums (hist_sum, a list of floats) are added in C and written
    # back once per fold: the same float additions in the same order, one float object per
    # variant per fold instead of one per entry; written back before any Python code runs
    memset(held, 0, sizeof(held))
    nv = _release(hsum, acc, held, 0)
    try:
        for entry in batch:
            seq_obj, latency_obj, error_obj = entry  # the twin's unpacking (its ValueError)
            if type(seq_obj) is not int or type(latency_obj) is not float or (
                    type(error_obj) is not float):  # not the middleware's (int, float, float)
                nv = _release(hsum, acc, held, nv)
                _fold_any_py(seq_obj, latency_obj, error_obj, ring_seq, ring_row, capacity, size,
                             units, hist, hist_sum)
                continue
            seq = PyLong_AsLongLongAndOverflow(seq_obj, &overflow)
            if overflow:  # past any decision number: the twin's own comparisons skip it
                nv = _release(hsum, acc, held, nv)
                _fold_any_py(seq_obj, latency_obj, error_obj, ring_seq, ring_row, capacity, size,
                             units, hist, hist_sum)
                continue
            latency = latency_obj
            error = error_obj
            if seq < 0:
                continue
            slot = seq % cap
            if slot >= size:
                continue  # evicted by a flood of newer requests: nothing to attribute to
            if slot >= len(rs):  # shrunk since ``size`` was read: the array's own IndexError
                nv = _release(hsum, acc, held, nv)
                ring_seq[slot]
            if rs.data.as_longlongs[slot] != seq:
                continue
            if slot >= len(rr):  # the row column shorter than the ring, as the array would say
                nv = _release(hsum, acc, held, nv)
                raise IndexError("array index out of range")
            row = rr.data.as_longlongs[slot]
            if not (0 <= row < len(lat_x) and row < len(lat_y) and row < len(err_x)
                    and row < len(err_y) and row < len(variant)):
                nv = _release(hsum, acc, held, nv)
                _fold_entry_py(units, row, latency_obj, error_obj, hist, hist_sum)
                continue
            lat_x.data.as_doubles[row] += latency
            lat_y.data.as_doubles[row] += 1.0
            if error:
                err_x.data.as_doubles[row] += error
            err_y.data.as_doubles[row] += 1.0
            v = variant.data.as_schars[row]  # the unit's variant, as in its analysis
            lo, hi = 0, _N_EDGES  # bisect_left(EDGES_MS, latency)
            while lo < hi:
                mid = (lo + hi) // 2
                if _EDGES.data.as_doubles[mid] < latency:
                    lo = mid + 1
                else:
                    hi = mid
            if 0 <= v * _N_SLOTS + lo < len(hist_a):
                hist_a.data.as_longlongs[v * _N_SLOTS + lo] += 1
            else:  # a variant code the histogram does not hold: the array's own indexing
                nv = _release(hsum, acc, held, nv)
                _add_at(hist, v * _N_SLOTS + lo, 1)
            if 0 <= v < nv and (held[v] or _hold(<list>hsum, v, acc, held)):
                acc[v] += latency  # the variant's latency sum, added in C (written back below)
            elif type(hsum) is list and 0 <= v < len(<list>hsum):  # not a float: Python's +
                (<list>hsum)[v] = (<list>hsum)[v] + latency
            else:  # the list's own indexing (a negative code wraps, as in the Python twin)
                nv = _release(hsum, acc, held, nv)
                _add_at(hsum, v, latency_obj)
    finally:
        _release(hsum, acc, held, nv)
    if tracker is not None:  # a decision no longer tracked is skipped by apply
        lat, err = auto
        for seq_obj, latency_obj, error_obj in batch:
            if _tracker_apply != NULL:  # tracker.apply(...), in C where it is the twin
                _tracker_apply(tracker, seq_obj, lat, latency_obj)
                _tracker_apply(tracker, seq_obj, err, error_obj)
            else:
                tracker.apply(seq_obj, lat, latency_obj)
                tracker.apply(seq_obj, err, error_obj)


cdef void set_tracker_apply(TrackerApply fn) noexcept:
    """Register the compiled ``DecisionTracker.apply``'s C call (see columns_c.pxd)."""
    global _tracker_apply
    _tracker_apply = fn


cdef enum:
    _HELD = 64  # variants whose latency sums a fold adds in C (more: Python's addition)


cdef bint _hold(list hsum, Py_ssize_t v, double* acc, unsigned char* held) except -1:
    """Take ``hsum[v]`` into C when it is a float (then ``held[v]``); False otherwise."""
    if v >= len(hsum):  # (shrunk by Python code since ``nv`` was read)
        return False
    cur = hsum[v]
    if type(cur) is not float:
        return False
    acc[v] = <double>cur
    held[v] = 1
    return True


cdef Py_ssize_t _release(object hsum, double* acc, unsigned char* held,
                         Py_ssize_t nv) except -1:
    """Write the sums held in C back into ``hsum`` (``nv`` of them were holdable); how many
    of its variants may be held from now on (0: not a list, or more than ``_HELD``)."""
    cdef Py_ssize_t k
    for k in range(nv):
        if held[k]:
            held[k] = 0
            if k < len(<list>hsum):
                (<list>hsum)[k] = acc[k]
            else:  # (cannot happen: no Python code runs while a sum is held) its IndexError
                hsum[k] = acc[k]
    if type(hsum) is not list or len(<list>hsum) > _HELD:
        return 0
    return len(<list>hsum)


cdef void _add_at(object seq, object index, object value) except *:
    """``seq[index] += value`` by the sequence's own indexing (never an unchecked C read)."""
    seq[index] += value


cdef void _fold_any_py(object seq, object latency_ms, object error, object ring_seq,
                      object ring_row, object capacity, Py_ssize_t size, object units,
                      object hist, object hist_sum) except *:
    """One entry of :func:`fold` exactly as the Python twin's loop takes it, for an entry that
    is not the middleware's ``(int, float, float)`` (a value another type, a number past a
    C integer): its eviction check first, then its float operations and its exceptions."""
    slot = seq % capacity
    if seq < 0 or slot >= size or ring_seq[slot] != seq:
        return  # evicted: nothing to attribute to
    _fold_entry_py(units, ring_row[slot], latency_ms, error, hist, hist_sum)


cdef void _fold_entry_py(object units, object row, object latency_ms, object error,
                         object hist, object hist_sum) except *:
    """One entry of :func:`fold` by Python indexing, for a row the columns do not hold: what
    the Python method does there (its IndexError, or a negative row's wrap-around)."""
    units.lat_x[row] += latency_ms
    units.lat_y[row] += 1.0
    if error:
        units.err_x[row] += error
    units.err_y[row] += 1.0
    v = units.variant[row]
    hist[v * N_SLOTS + bisect_left(EDGES_MS, latency_ms)] += 1
    hist_sum[v] += latency_ms




cdef inline bint _typed(object a, char code):
    return type(a) is array and (<array>a).ob_descr.typecode == code


cdef enum:
    _MAX_COLUMNS = 16  # ring columns ring_remember writes in C (more: the Python method)


ctypedef struct _Column:
    PyObject* col  # the column's array, borrowed from the ring's list (see ring_remember)
    double d  # its fill, read once: a 'd' column's
    signed char b  # a 'b' column's
    bint is_d


cdef inline bint _writable(object pair, Py_ssize_t slot, bint append, _Column* out):
    """Whether a ring column ``(col, fill)`` is one C writes at ``slot`` (an ``array`` of 'd'
    with a float fill or of 'b' with an int fill in its range, holding ``slot``; for an append,
    exporting no buffer); if so, the array and its fill in ``*out``."""
    cdef long long x
    cdef int overflow = 0
    if type(pair) is not tuple or len(<tuple>pair) != 2:
        return False
    col, fill = <tuple>pair
    if type(col) is not array:
        return False
    if append:
        if array_exports(<array>col):
            return False
    elif slot >= len(<array>col):
        return False
    out.col = <PyObject*>col
    if (<array>col).ob_descr.typecode == b"d" and type(fill) is float:
        out.d, out.is_d = <double>fill, True
        return True
    if (<array>col).ob_descr.typecode == b"b" and type(fill) is int:
        x = PyLong_AsLongLongAndOverflow(fill, &overflow)
        out.b, out.is_d = <signed char>x, False
        return not overflow and -128 <= x <= 127
    return False


cdef inline void _put(array col, Py_ssize_t i, _Column* c) noexcept:
    """``col[i] = fill`` for a column :func:`_writable` accepted."""
    if c.is_d:
        col.data.as_doubles[i] = c.d
    else:
        col.data.as_schars[i] = c.b


cdef inline Py_ssize_t _grow(array a) except -1:
    """One more slot at the end (``a.append``'s resize); its index."""
    cdef Py_ssize_t n = len(a)
    resize_smart(a, n + 1)
    return n


cdef Py_ssize_t ring_remember(array seq_a, array time_a, array row_a, list columns,
                              long long cap, long long s, double now, long long r) except -2:
    """``PendingRing.remember(s, now, r)`` (store/ring.py) on the ring's arrays and columns
    (``seq`` 'q', ``time`` 'd', ``row`` 'q', ``_columns``; ``s >= 0``, ``cap >= 1``): an
    overwrite in place, or an append while the ring fills, with the Python method's writes in
    its order (an append writes at each array's end, as ``append`` does). Everything is checked
    before the first write and no Python code runs in between; anything else (a slot past the
    end, arrays of other lengths, a column C does not write, a buffer exported by an array that
    would grow) returns -1 having written nothing: the caller runs the Python method."""
    cdef Py_ssize_t slot = s % cap
    cdef Py_ssize_t size = len(seq_a), k, n = PyList_GET_SIZE(columns)
    cdef bint append = slot == size
    cdef _Column cols[_MAX_COLUMNS]
    cdef array col
    if slot > size:  # slots skipped: the Python method grows the ring
        return -1
    if append:
        if (len(time_a) != size or len(row_a) != size or array_exports(seq_a)
                or array_exports(time_a) or array_exports(row_a)):
            return -1
    elif slot >= len(time_a) or slot >= len(row_a):
        return -1
    if n > _MAX_COLUMNS:
        return -1
    for k in range(n):  # every column checked before any write, its array and fill kept
        if not _writable(<object>PyList_GET_ITEM(columns, k), slot, append, &cols[k]):
            return -1
    # the arrays in cols are borrowed: the list holds their tuples, and from here to the return
    # no Python code runs (resize_smart only reallocates), so none is replaced or freed
    if append:
        seq_a.data.as_longlongs[_grow(seq_a)] = s
        time_a.data.as_doubles[_grow(time_a)] = now
        row_a.data.as_longlongs[_grow(row_a)] = r
        for k in range(n):
            col = <array><object>cols[k].col
            _put(col, _grow(col), &cols[k])
    else:
        seq_a.data.as_longlongs[slot] = s
        time_a.data.as_doubles[slot] = now
        row_a.data.as_longlongs[slot] = r
        for k in range(n):
            _put(<array><object>cols[k].col, slot, &cols[k])
    return slot


def remember(self, seq, now, row):
    """Put decision ``seq`` (issued at ``now``, payload ``row``) in its slot: see
    ``PendingRing.remember`` (store/ring.py), the Python twin, which takes every case
    :func:`ring_remember` does not write (another class, an argument of another type, a number
    past a C integer, a ring whose ``__init__`` never ran or whose parts were replaced)."""
    cdef long long s, r, cap
    cdef int o1 = 0, o2 = 0, o3 = 0
    cdef Py_ssize_t slot = -1
    if type(self) is _Ring and type(seq) is int and type(row) is int and type(now) is float:
        capacity, seq_a = getattr(self, "capacity", None), getattr(self, "seq", None)
        time_a, row_a = getattr(self, "time", None), getattr(self, "row", None)
        columns = getattr(self, "_columns", None)
        if (type(capacity) is int and _typed(seq_a, b"q") and _typed(time_a, b"d")
                and _typed(row_a, b"q") and type(columns) is list):
            s = PyLong_AsLongLongAndOverflow(seq, &o1)
            r = PyLong_AsLongLongAndOverflow(row, &o2)
            cap = PyLong_AsLongLongAndOverflow(capacity, &o3)
            if not (o1 or o2 or o3) and s >= 0 and cap >= 1:
                slot = ring_remember(seq_a, time_a, row_a, columns, cap, s, now, r)
    if slot < 0:
        return _remember_py(self, seq, now, row)
    return slot


def add_to_pair(xs, ys, slot, row, m, value, any_):
    """``store.rows.add_to_pair`` (the Python twin): add ``value`` to one unit's ``(x, y)``
    of metric ``m`` and move its group's sums by exactly the change; the same float
    operations in the same order, in C for 'd' arrays, a list row of floats and a float."""
    cdef array xa, ya
    cdef Py_ssize_t i, b
    cdef double old_x, old_y, new_x, new_y, v
    cdef list r
    if (type(xs) is array and type(ys) is array and type(row) is list
            and type(value) is float and type(slot) is int and type(m) is int):
        xa, ya, r = xs, ys, row
        i = slot
        b = 1 + 5 * <Py_ssize_t>m
        if (xa.ob_descr.typecode == b"d" and ya.ob_descr.typecode == b"d"
                and 0 <= i < len(xa) and i < len(ya) and 0 < b and b + 4 < len(r)
                and type(r[b]) is float and type(r[b + 1]) is float
                and type(r[b + 2]) is float and type(r[b + 3]) is float
                and type(r[b + 4]) is float):
            v = value
            old_x, old_y = xa.data.as_doubles[i], ya.data.as_doubles[i]
            if any_:
                new_x = v if v > old_x else old_x  # max(old_x, value)
            else:
                new_x = old_x + v
            new_y = old_y + 1.0
            xa.data.as_doubles[i], ya.data.as_doubles[i] = new_x, new_y
            r[b] = <double>r[b] + (new_x - old_x)
            r[b + 1] = <double>r[b + 1] + 1.0
            r[b + 2] = <double>r[b + 2] + (new_x * new_x - old_x * old_x)
            r[b + 3] = <double>r[b + 3] + (new_y * new_y - old_y * old_y)
            r[b + 4] = <double>r[b + 4] + (new_x * new_y - old_x * old_y)
            return None
    # anything else: the Python twin's lines, as generic object operations
    old_x, old_y = xs[slot], ys[slot]
    new_xo = max(old_x, value) if any_ else old_x + value
    new_yo = old_y + 1.0
    xs[slot], ys[slot] = new_xo, new_yo
    bo = 1 + 5 * m
    row[bo] += new_xo - old_x
    row[bo + 1] += 1.0
    row[bo + 2] += new_xo * new_xo - old_x * old_x
    row[bo + 3] += new_yo * new_yo - old_y * old_y
    row[bo + 4] += new_xo * new_yo - old_x * old_y
    return None


# last: store/ring.py imports this module at its own end, when PendingRing exists (and imported
# first, this module is complete before ring.py asks it for its twin)
from modelrouter.config.extensions import python_method
from modelrouter.store.ring import PendingRing as _PendingRing

_Ring = _PendingRing
_remember_py = python_method(_PendingRing, "remember")
