# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twins of the memory store's column arithmetic (see ``config/extensions.py``).

- :class:`EntryBuffer`: the journal's typed entries, C records the compiled middleware appends
  (``push_entry``, declared in columns_c.pxd) instead of tuples;
- :func:`fold`: ``AutoJournal.fold`` (store/journal.py) with typed reads and writes of the
  ``array`` columns, the typed entries first, the histogram slot from a bucket table
  (:func:`histogram_slot`) instead of a bisection; in bandit mode the tracker's compiled
  ``apply`` as a C call (registered by store/decisions_c.pyx, :func:`set_tracker_apply`;
  for typed entries :func:`set_tracker_apply_typed`, the number and value as C numbers);
- :func:`remember`: ``PendingRing.remember`` (store/ring.py) through :func:`ring_remember`,
  the ring's C path (an overwrite in place or an append while the ring fills, its extra
  ``'d'`` and ``'b'`` columns filled in C), which the compiled ``DecisionTracker.open``
  (store/decisions_c.pyx) calls too (declared in columns_c.pxd), with a :class:`ColumnCache`
  of its ring's columns as last checked;
- :func:`add_to_pair`: ``store.rows.add_to_pair``, the same float operations in C on 'd'
  arrays (``pair_to_row`` in columns_c.pxd, shared with the tracker's ``apply``).

Each does exactly what its Python twin does, in the same order and with the same float
operations (built with ``-ffp-contract=off``: no fused multiply-add); an index the arrays do
not hold, or a value of another type, goes through the Python operations (their exceptions).
"""

from bisect import bisect_left

cimport cython
from cpython.array cimport array, resize_smart
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.string cimport memcpy, memset

from modelrouter.store.array_exports cimport array_exports


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1

from modelrouter.store.histogram import EDGES_MS, N_SLOTS

cdef array _EDGES = array("d", EDGES_MS)
cdef Py_ssize_t _N_EDGES = len(EDGES_MS)
cdef Py_ssize_t _N_SLOTS = N_SLOTS


# The histogram slot of a latency, ``bisect_left(EDGES_MS, x)``, without a bisection: a
# positive double's top bits (its exponent and the first _SUB_BITS bits of its mantissa) name
# a bucket of 1/64 of an octave, narrower than the edges' spacing (2 % apart), so a bucket
# holds at most one edge. _START[k] is bisect_left of the bucket's smallest double (a lower
# bound of every answer in it); one or two comparisons with the edges finish the search,
# exactly as the bisection ends. Built at import from the edges themselves.
cdef enum:
    _SUB_BITS = 6
cdef unsigned long long _KEY0 = 0  # the bucket of the first edge
cdef array _START = array("H")  # per bucket from _KEY0 to the last edge's


cdef inline unsigned long long _key(double x) noexcept:
    return (<unsigned long long*>&x)[0] >> (52 - _SUB_BITS)


cdef inline Py_ssize_t slot_of(double x) noexcept:
    """``bisect_left(EDGES_MS, x)`` for any double (NaN: 0, as the bisection gives it)."""
    cdef Py_ssize_t lo
    if not (x > _EDGES.data.as_doubles[0]):  # (NaN too: every comparison false)
        return 0
    if not (x <= _EDGES.data.as_doubles[_N_EDGES - 1]):
        return _N_EDGES
    lo = _START.data.as_ushorts[_key(x) - _KEY0]
    while _EDGES.data.as_doubles[lo] < x:  # ends at the last edge at the latest (x <= it)
        lo += 1
    return lo


cdef int _build_starts() except -1:
    """Fill _START from the edges (positive, increasing, fewer than 65,536)."""
    global _KEY0
    cdef unsigned long long k, last, bits
    cdef double start
    if not (0.0 < EDGES_MS[0] and len(EDGES_MS) < 65535
            and all(a < b for a, b in zip(EDGES_MS, EDGES_MS[1:]))):
        raise ValueError("histogram edges must be positive, increasing and fewer than 65,535")
    _KEY0, last = _key(EDGES_MS[0]), _key(EDGES_MS[len(EDGES_MS) - 1])  # (no wraparound)
    for k in range(_KEY0, last + 1):
        bits = k << (52 - _SUB_BITS)
        start = (<double*>&bits)[0]  # the bucket's smallest double
        _START.append(bisect_left(EDGES_MS, start))
    return 0


_build_starts()


def histogram_slot(double x):
    """``bisect_left(EDGES_MS, x)`` as the compiled fold computes it (for tests)."""
    return slot_of(x)


cdef object _Ring = None  # PendingRing and its Python remember (set at the end of this module)
cdef object _remember_py = None
cdef TrackerApply _tracker_apply = NULL  # set by store/decisions_c.pyx when it is imported
cdef TrackerApplyTyped _tracker_apply_typed = NULL  # (the same)


cdef enum:
    _HELD = 64  # variants whose latency sums a fold adds in C (more: Python's addition)


def fold(self, ring_seq, ring_row, capacity, units, hist, hist_sum, tracker=None,
         auto=(0, 0)):
    """Apply the entries present now to the unit table and histogram (caller holds the
    store lock): see ``AutoJournal.fold`` (store/journal.py), the Python twin. The typed
    entries first (the compiled middleware's), then the list's, as the twin takes them.
    Returns how many entries had no pending decision to attribute them to (skipped)."""
    entries = self.entries
    typed = self.typed
    cdef EntryBuffer buf = typed if type(typed) is EntryBuffer else None
    cdef Py_ssize_t n = len(entries), i, nb = 0, nb_cap = 0, lost = 0
    cdef Entry* items = NULL
    cdef long long seq
    cdef int overflow
    cdef _Fold f = _Fold(ring_seq, ring_row, capacity, units, hist, hist_sum)  # (TypeErrors
    if buf is not None and buf.n:  # before anything is taken) all typed entries, taken whole:
        items, nb, nb_cap = buf.items, buf.n, buf.cap  # those appended from now on (Python
        buf.items, buf.n, buf.cap = buf.spare, 0, buf.spare_cap  # code may run below) are
        buf.spare, buf.spare_cap = NULL, 0  # the next fold's
    elif typed is not None and buf is None and len(typed):  # not the compiled buffer
        entries[:0] = typed.take()
        n = len(entries)
    if not n and not nb:
        return 0
    batch = entries[:n]
    del entries[:n]  # entries appended since the slice stay, after these
    try:
        try:
            for i in range(nb):
                lost += f.entry(items[i].seq, items[i].latency, items[i].error, None, None)
            for entry in batch:
                seq_obj, latency_obj, error_obj = entry  # the twin's unpacking (its ValueError)
                if (type(seq_obj) is int and type(latency_obj) is float
                        and type(error_obj) is float):  # the middleware's (int, float, float)
                    seq = PyLong_AsLongLongAndOverflow(seq_obj, &overflow)
                    if not overflow:  # (past any decision number: the twin's comparisons)
                        lost += f.entry(seq, <double>latency_obj, <double>error_obj,
                                        latency_obj, error_obj)
                        continue
                f.release()  # any other entry: the Python twin's operations, in order
                lost += _fold_any_py(seq_obj, latency_obj, error_obj, ring_seq, ring_row,
                                     capacity, f.size, units, hist, hist_sum)
        finally:
            f.release()
        if tracker is not None:  # a decision no longer tracked is skipped by apply
            lat, err = auto
            for i in range(nb):
                if _tracker_apply_typed != NULL:
                    _tracker_apply_typed(tracker, items[i].seq, lat, items[i].latency)
                    _tracker_apply_typed(tracker, items[i].seq, err, items[i].error)
                else:
                    _apply(tracker, items[i].seq, lat, float(items[i].latency))
                    _apply(tracker, items[i].seq, err, _error_of(items[i].error))
            for seq_obj, latency_obj, error_obj in batch:
                _apply(tracker, seq_obj, lat, latency_obj)
                _apply(tracker, seq_obj, err, error_obj)
        return lost
    finally:
        if items != NULL:  # kept for the next fold's entries (unless one was kept meanwhile)
            if buf.spare == NULL:
                buf.spare, buf.spare_cap = items, nb_cap
            else:
                PyMem_Free(items)


cdef inline object _apply(object tracker, object seq, object m, object value):
    """``tracker.apply(seq, m, value)``, in C where it is the compiled twin."""
    if _tracker_apply != NULL:
        return _tracker_apply(tracker, seq, m, value)
    return tracker.apply(seq, m, value)


cdef inline object _error_of(double error):
    """The error value as the middleware's constants would give it (no new object for 0/1)."""
    if error == 0.0:
        return _ZERO
    if error == 1.0:
        return _ONE
    return error


cdef object _ZERO = 0.0, _ONE = 1.0


@cython.final
cdef class _Fold:
    """One fold's columns, typed, and the variants' latency sums held in C: what
    :meth:`entry` needs for one entry (the fold's locals, shared by its two loops)."""

    cdef array rs, rr, hist_a, lat_x, lat_y, err_x, err_y, variant
    cdef object ring_seq, units, hist, hsum
    cdef Py_ssize_t size, nv
    cdef long long cap
    cdef double acc[_HELD]  # hist_sum's floats while held in C (held[v] set)
    cdef unsigned char held[_HELD]

    def __cinit__(self, ring_seq, ring_row, capacity, units, hist, hist_sum):
        self.rs, self.rr, self.hist_a = ring_seq, ring_row, hist
        self.lat_x, self.lat_y, self.err_x = units.lat_x, units.lat_y, units.err_x
        self.err_y, self.variant = units.err_y, units.variant
        self.ring_seq, self.units, self.hist, self.hsum = ring_seq, units, hist, hist_sum
        self.cap = capacity
        self.size = len(self.rs)
        # the variants' latency sums (hist_sum, a list of floats) are added in C and written
        # back once per fold: the same float additions in the same order, one float object
        # per variant per fold instead of one per entry; written back before any Python code
        memset(self.held, 0, sizeof(self.held))
        self.nv = _release(hist_sum, self.acc, self.held, 0)

    cdef int release(self) except -1:
        """Write the held sums back (before any Python code runs)."""
        self.nv = _release(self.hsum, self.acc, self.held, self.nv)
        return 0

    cdef int entry(self, long long seq, double latency, double error, object latency_obj,
                   object error_obj) except -1:
        """One entry, its values in C (``latency_obj`` and ``error_obj``: the same values as
        the entry's objects, or None for a typed entry: made where Python code needs them);
        1 when its decision is no longer pending (skipped), else 0."""
        cdef Py_ssize_t slot, row, lo, v
        hsum = self.hsum
        if seq < 0:
            return 1
        slot = seq % self.cap
        if slot >= self.size:
            return 1  # evicted by a flood of newer requests: nothing to attribute to
        if slot >= len(self.rs):  # shrunk since ``size`` was read: the array's own IndexError
            self.release()
            self.ring_seq[slot]
        if self.rs.data.as_longlongs[slot] != seq:
            return 1
        if slot >= len(self.rr):  # the row column shorter than the ring, as the array would say
            self.release()
            raise IndexError("array index out of range")
        row = self.rr.data.as_longlongs[slot]
        if not (0 <= row < len(self.lat_x) and row < len(self.lat_y) and row < len(self.err_x)
                and row < len(self.err_y) and row < len(self.variant)):
            self.release()
            _fold_entry_py(self.units, row, latency if latency_obj is None else latency_obj,
                           _error_of(error) if error_obj is None else error_obj, self.hist,
                           hsum)
            return 0
        self.lat_x.data.as_doubles[row] += latency
        self.lat_y.data.as_doubles[row] += 1.0
        if error:
            self.err_x.data.as_doubles[row] += error
        self.err_y.data.as_doubles[row] += 1.0
        v = self.variant.data.as_schars[row]  # the unit's variant, as in its analysis
        lo = slot_of(latency)  # bisect_left(EDGES_MS, latency)
        if 0 <= v * _N_SLOTS + lo < len(self.hist_a):
            self.hist_a.data.as_longlongs[v * _N_SLOTS + lo] += 1
        else:  # a variant code the histogram does not hold: the array's own indexing
            self.release()
            _add_at(self.hist, v * _N_SLOTS + lo, 1)
        if 0 <= v < self.nv and (self.held[v] or _hold(<list>hsum, v, self.acc, self.held)):
            self.acc[v] += latency  # the variant's latency sum, added in C (written back later)
        elif type(hsum) is list and 0 <= v < len(<list>hsum):  # not a float: Python's +
            (<list>hsum)[v] = (<list>hsum)[v] + (latency if latency_obj is None
                                                  else latency_obj)
        else:  # the list's own indexing (a negative code wraps, as in the Python twin)
            self.release()
            _add_at(hsum, v, latency if latency_obj is None else latency_obj)
        return 0


@cython.final
cdef class EntryBuffer:
    """The journal's typed entries (see columns_c.pxd): ``(seq, latency_ms, error)`` as C
    records, appended by the compiled middleware and read by the compiled fold."""

    def __cinit__(self):
        self.items = self.spare = NULL
        self.n = self.cap = self.spare_cap = 0

    def __dealloc__(self):
        PyMem_Free(self.items)
        PyMem_Free(self.spare)

    cdef int grow(self) except -1:
        cdef Py_ssize_t cap = max(64, 2 * self.cap)
        cdef Entry* items = <Entry*>PyMem_Realloc(self.items, cap * sizeof(Entry))
        if items == NULL:
            raise MemoryError()
        self.items, self.cap = items, cap
        return 0

    def __len__(self):
        return self.n

    def append(self, seq, latency_ms, error):
        """Append one entry (an int decision number and two floats, as C values)."""
        push_entry(self, seq, latency_ms, error)

    def take(self):
        """The entries as ``(seq, latency_ms, error)`` tuples, removed from the buffer (the
        Python fold's way to read them)."""
        out = [(self.items[i].seq, self.items[i].latency, _error_of(self.items[i].error))
               for i in range(self.n)]
        self.n = 0
        return out

    def __repr__(self):
        return f"EntryBuffer(n={self.n}, cap={self.cap})"


cdef void set_tracker_apply(TrackerApply fn) noexcept:
    """Register the compiled ``DecisionTracker.apply``'s C call (see columns_c.pxd)."""
    global _tracker_apply
    _tracker_apply = fn


cdef void set_tracker_apply_typed(TrackerApplyTyped fn) noexcept:
    """Register the decision tracker's typed ``apply`` (store/decisions_c.pyx)."""
    global _tracker_apply_typed
    _tracker_apply_typed = fn


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


cdef bint _fold_any_py(object seq, object latency_ms, object error, object ring_seq,
                      object ring_row, object capacity, Py_ssize_t size, object units,
                      object hist, object hist_sum) except -1:
    """One entry of :func:`fold` exactly as the Python twin's loop takes it, for an entry that
    is not the middleware's ``(int, float, float)`` (a value another type, a number past a
    C integer): its eviction check first, then its float operations and its exceptions;
    True when it was skipped (no pending decision)."""
    slot = seq % capacity
    if seq < 0 or slot >= size or ring_seq[slot] != seq:
        return True  # evicted: nothing to attribute to
    _fold_entry_py(units, ring_row[slot], latency_ms, error, hist, hist_sum)
    return False


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


cdef class ColumnCache:
    """See store/columns_c.pxd: the columns :func:`ring_remember` last checked for one
    caller, held."""


cdef inline bint _writable(object pair, Py_ssize_t slot, bint append, RingColumn* out):
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


cdef inline void _put(array col, Py_ssize_t i, RingColumn* c) noexcept:
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


cdef inline bint _same(list columns, list pairs, Py_ssize_t n) noexcept:
    """Whether ``columns`` holds exactly the tuples ``pairs`` holds (``n`` of each)."""
    cdef Py_ssize_t k
    if pairs is None or PyList_GET_SIZE(pairs) != n:
        return False
    for k in range(n):
        if PyList_GET_ITEM(columns, k) != PyList_GET_ITEM(pairs, k):
            return False
    return True


cdef Py_ssize_t ring_remember(array seq_a, array time_a, array row_a, list columns,
                              long long cap, long long s, double now, long long r,
                              ColumnCache cache) except -2:
    """``PendingRing.remember(s, now, r)`` (store/ring.py) on the ring's arrays and columns
    (``seq`` 'q', ``time`` 'd', ``row`` 'q', ``_columns``; ``s >= 0``, ``cap >= 1``): an
    overwrite in place, or an append while the ring fills, with the Python method's writes in
    its order (an append writes at each array's end, as ``append`` does). Everything is checked
    before the first write and no Python code runs in between; anything else (a slot past the
    end, arrays of other lengths, a column C does not write, a buffer exported by an array that
    would grow) returns -1 having written nothing: the caller runs the Python method. With a
    ``cache`` (store/columns_c.pxd) the columns' tuples are compared by identity with those it
    holds instead of unpacked and checked again; on a change, the new ones are copied (held)
    before any check and kept after the writes."""
    cdef Py_ssize_t slot = s % cap
    cdef Py_ssize_t size, k, n = PyList_GET_SIZE(columns)
    cdef bint append, hit = cache is not None and _same(columns, cache.pairs, n)
    cdef RingColumn local[MAX_RING_COLUMNS]
    cdef RingColumn* cols = local
    cdef array col
    cdef list pairs = None
    if cache is not None and not hit:  # the tuples to check, held: the copy is made before
        pairs = list(columns)  # every check, as allocating may run Python code (the GC's
        n = PyList_GET_SIZE(columns)  # finalizers), which must not run between check and write
    size = len(seq_a)
    append = slot == size
    if slot > size:  # slots skipped: the Python method grows the ring
        return -1
    if append:
        if (len(time_a) != size or len(row_a) != size or array_exports(seq_a)
                or array_exports(time_a) or array_exports(row_a)):
            return -1
    elif slot >= len(time_a) or slot >= len(row_a):
        return -1
    if n > MAX_RING_COLUMNS:
        return -1
    if hit:
        cols = cache.cols  # the same tuples: the same arrays and fills; lengths and exports
        for k in range(n):  # may have changed since
            col = <array><object>cols[k].col
            if append:
                if array_exports(col):
                    return -1
            elif slot >= len(col):
                return -1
    else:
        if pairs is not None and not _same(columns, pairs, n):
            return -1  # the columns changed while the copy was made: the Python method
        for k in range(n):  # every column checked before any write, its array and fill kept
            if not _writable(<object>PyList_GET_ITEM(columns, k), slot, append, &local[k]):
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
    if pairs is not None:  # after the writes (replacing the old list frees what it held): the
        memcpy(cache.cols, local, n * sizeof(RingColumn))  # columns checked, held from now on
        cache.pairs = pairs
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
                slot = ring_remember(seq_a, time_a, row_a, columns, cap, s, now, r, None)
    if slot < 0:
        return _remember_py(self, seq, now, row)
    return slot


def add_to_pair(xs, ys, slot, row, m, value, any_):
    """``store.rows.add_to_pair`` (the Python twin): add ``value`` to one unit's ``(x, y)``
    of metric ``m`` and move its group's sums by exactly the change; the same float
    operations in the same order, in C for 'd' arrays (the row's too), a float value and int
    slot and metric (``pair_to_row``); anything else (a list row included) by the Python
    twin's lines."""
    cdef double old_x, old_y
    cdef long long si, mi
    cdef int o1 = 0, o2 = 0
    if (type(xs) is array and type(ys) is array and type(row) is array
            and type(value) is float and type(slot) is int and type(m) is int):
        si = PyLong_AsLongLongAndOverflow(slot, &o1)
        mi = PyLong_AsLongLongAndOverflow(m, &o2)
        if (not o1 and not o2 and 0 <= mi < 1 << 40
                and pair_to_row(xs, ys, <Py_ssize_t>si, row, <Py_ssize_t>mi, value, any_)):
            return None  # else the Python twin's lines below (their exceptions)
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
