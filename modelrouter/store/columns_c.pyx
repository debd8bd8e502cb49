# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twins of the memory store's column arithmetic (see ``config/extensions.py``).

- :func:`fold`: ``AutoJournal.fold`` (store/journal.py) with typed reads and writes of the
  ``array`` columns;
- :func:`remember`: ``PendingRing.remember`` (store/ring.py), its extra ``'d'`` and ``'b'``
  columns filled in C;
- :func:`add_to_pair`: ``store.rows.add_to_pair``, the same float operations in C.

Each does exactly what its Python twin does, in the same order and with the same float
operations (built with ``-ffp-contract=off``: no fused multiply-add); an index the arrays do
not hold, or a value of another type, goes through the Python operations (their exceptions).
"""

from bisect import bisect_left

from cpython.array cimport array


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1

from modelrouter.store.histogram import EDGES_MS, N_SLOTS

cdef array _EDGES = array("d", EDGES_MS)
cdef Py_ssize_t _N_EDGES = len(EDGES_MS)
cdef Py_ssize_t _N_SLOTS = N_SLOTS


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
    if not n:
        return
    batch = entries[:n]
    del entries[:n]  # entries appended since the slice stay, after these
    size = len(rs)
    for entry in batch:
        seq_obj, latency_obj, error_obj = entry  # the twin's unpacking (its ValueError)
        if type(seq_obj) is not int or type(latency_obj) is not float or (
                type(error_obj) is not float):  # not the middleware's (int, float, float)
            _fold_any_py(seq_obj, latency_obj, error_obj, ring_seq, ring_row, capacity, size,
                         units, hist, hist_sum)
            continue
        seq = PyLong_AsLongLongAndOverflow(seq_obj, &overflow)
        if overflow:  # past any decision number: the twin's own comparisons skip it
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
            ring_seq[slot]
        if rs.data.as_longlongs[slot] != seq:
            continue
        if slot >= len(rr):  # the row column shorter than the ring, as the array would say
            raise IndexError("array index out of range")
        row = rr.data.as_longlongs[slot]
        if not (0 <= row < len(lat_x) and row < len(lat_y) and row < len(err_x)
                and row < len(err_y) and row < len(variant)):
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
            _add_at(hist, v * _N_SLOTS + lo, 1)
        if type(hsum) is list and 0 <= v < len(<list>hsum):
            (<list>hsum)[v] = (<list>hsum)[v] + latency
        else:  # the list's own indexing (a negative code wraps, as in the Python twin)
            _add_at(hsum, v, latency_obj)
    if tracker is not None:  # a decision no longer tracked is skipped by apply
        lat, err = auto
        for seq_obj, latency_obj, error_obj in batch:
            tracker.apply(seq_obj, lat, latency_obj)
            tracker.apply(seq_obj, err, error_obj)


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


cdef inline bint _fill_slot(array col, Py_ssize_t slot, object fill) except -1:
    """``col[slot] = fill`` in C for the ring's 'd' and 'b' columns; False: do it in Python."""
    cdef char code = col.ob_descr.typecode
    cdef long x
    if slot >= len(col):
        return False
    if code == b"d" and type(fill) is float:
        col.data.as_doubles[slot] = <double>fill
        return True
    if code == b"b" and type(fill) is int:
        x = fill
        if -128 <= x <= 127:
            col.data.as_schars[slot] = <signed char>x
            return True
    return False


def remember(self, seq, now, row):
    """Put decision ``seq`` (issued at ``now``, payload ``row``) in its slot: see
    ``PendingRing.remember`` (store/ring.py), the Python twin (``_remember_py``), which takes
    every case this one does not write in C (a slot past the end: the ring grows)."""
    cdef array seq_a = self.seq, time_a = self.time, row_a = self.row
    cdef long long s, r
    cdef Py_ssize_t slot, size
    if type(seq) is not int or type(row) is not int or seq < 0 or row < 0:
        return self._remember_py(seq, now, row)
    s, r = seq, row
    slot = s % <long long>self.capacity
    size = len(seq_a)
    columns = self._columns
    if slot < size and slot < len(time_a) and slot < len(row_a):
        for col, fill in columns:  # columns first: a column C cannot write goes to Python
            if type(col) is not array or slot >= len(<array>col):
                return self._remember_py(seq, now, row)
        seq_a.data.as_longlongs[slot] = s
        time_a.data.as_doubles[slot] = now
        row_a.data.as_longlongs[slot] = r
        for col, fill in columns:
            if not _fill_slot(<array>col, slot, fill):
                col[slot] = fill
        return slot
    return self._remember_py(seq, now, row)


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
