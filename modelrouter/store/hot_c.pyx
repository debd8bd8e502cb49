# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twins of the memory store's hot path (``store/unit_path.py`` says what each is).

- :class:`FastLock`: the store's lock, a ``threading.Lock`` without argument parsing on
  ``__enter__`` (the C code takes it directly).
- :class:`UnitPath`: the columns ``expose_unit`` touches, as typed C fields.
- :func:`expose_unit`: ``MemoryStore.expose_unit`` on those fields.
- :func:`fold`: ``AutoJournal.fold`` with typed reads and writes of the ``array`` columns.

Each does exactly what its Python twin does, in the same order and with the same float
operations (the tests run both on the same requests and compare every column); what allocates
or can fail calls the same Python code as the twin.
"""

from cpython.array cimport array, resize_smart
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock,
                               PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_release_lock, PyThread_type_lock)


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1


cdef extern from "pythread.h":
    int PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds,
                                    int intr_flag) nogil

from bisect import bisect_left
from math import ceil
from operator import index as _index
from threading import TIMEOUT_MAX as _TIMEOUT_MAX

from modelrouter.store.histogram import EDGES_MS, N_SLOTS

cdef array _EDGES = array("d", EDGES_MS)
cdef Py_ssize_t _N_EDGES = len(EDGES_MS)
cdef Py_ssize_t _N_SLOTS = N_SLOTS


cdef class FastLock:
    """A non-reentrant lock (``threading.Lock``'s interface) whose ``with`` costs no argument
    parsing; a blocked acquire waits without the GIL, as ``threading.Lock`` does."""

    def __cinit__(self):
        self._lock = <void*>PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("cannot allocate a lock")

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(<PyThread_type_lock>self._lock)

    cdef void take(self):
        if not PyThread_acquire_lock(<PyThread_type_lock>self._lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(<PyThread_type_lock>self._lock, WAIT_LOCK)
        self._held = True

    cdef void give(self):
        self._held = False
        PyThread_release_lock(<PyThread_type_lock>self._lock)

    def acquire(self, blocking=True, timeout=-1):
        """``threading.Lock.acquire``: True when taken."""
        cdef long long micros
        cdef int ok
        if not _index(blocking):  # an integer, as threading.Lock takes it (TypeError else)
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            ok = PyThread_acquire_lock(<PyThread_type_lock>self._lock, NOWAIT_LOCK)
        elif timeout == -1:
            self.take()
            return True
        else:
            if timeout < 0:
                raise ValueError("timeout value must be a non-negative number")
            if timeout > _TIMEOUT_MAX:  # as threading.Lock (else a wait of centuries)
                raise OverflowError("timeout value is too large")
            micros = <long long>ceil(timeout * 1e6)  # rounded up, as threading.Lock does
            with nogil:
                ok = PyThread_acquire_lock_timed(<PyThread_type_lock>self._lock, micros, 0)
        if ok:
            self._held = True
        return bool(ok)

    def release(self):
        """``threading.Lock.release``; RuntimeError when not held."""
        if not self._held:
            raise RuntimeError("release unlocked lock")
        self.give()

    def locked(self):
        return self._held

    def __enter__(self):
        self.take()
        return True

    def __exit__(self, *exc_info):
        if not self._held:  # as threading.Lock: a second release would admit two holders
            raise RuntimeError("release unlocked lock")
        self.give()

    def __repr__(self):
        return f"<FastLock {'locked' if self._held else 'unlocked'}>"


cdef class UnitPath:
    """What ``expose_unit`` reads and writes (see ``store/unit_path.py``, the Python twin)."""

    # fields: hot_c.pxd (lock, rows, ubucket, exposures, ring arrays, units, requests, cap,
    # seq; the cached layout of the last allocation seen)

    def __init__(self, FastLock lock, Py_ssize_t cap, array ring_seq, array ring_time,
                 array ring_row, list requests):
        self.lock = lock
        self.cap = cap
        self.ring_seq, self.ring_time, self.ring_row = ring_seq, ring_time, ring_row
        self.requests = requests
        self.seq = 0

    def use_units(self, units, dict rows, array exposures, array ubucket):
        """Install a unit table's row index and columns (the store holds the lock)."""
        self.units, self.rows, self.exposures, self.ubucket = units, rows, exposures, ubucket

    cdef object choose(self, object alloc, double u):
        """``alloc.choose(u)`` from the allocation's cached layout (bisect_right)."""
        cdef Py_ssize_t lo, hi, mid
        if alloc is not self._alloc:
            layout = getattr(alloc, "layout", None)
            if layout is None:
                return alloc.choose(u)
            bounds, owners = layout()
            self._bounds, self._owners = array("d", bounds), array("q", owners)
            self._alloc = alloc
        lo, hi = 0, len(self._bounds)
        while lo < hi:
            mid = (lo + hi) // 2
            if u < self._bounds.data.as_doubles[mid]:
                hi = mid
            else:
                lo = mid + 1
        if lo >= len(self._owners):  # past every bound: the allocation's own IndexError
            return alloc.choose(u)
        return self._owners.data.as_longlongs[lo]


cdef inline void _append_double(array a, double v):
    cdef Py_ssize_t n = len(a)
    resize_smart(a, n + 1)
    a.data.as_doubles[n] = v


cdef inline void _append_longlong(array a, long long v):
    cdef Py_ssize_t n = len(a)
    resize_smart(a, n + 1)
    a.data.as_longlongs[n] = v


cdef inline object _append_small(array a, object v, long low, long high, int kind):
    """``a.append(v)`` for the integer columns: in C when ``v`` is an int in the column's range,
    else by the array itself (its own OverflowError or TypeError)."""
    cdef long x
    cdef Py_ssize_t n
    if type(v) is not int:
        a.append(v)
        return None
    x = v
    if x < low or x > high:
        a.append(v)
        return None
    n = len(a)
    resize_smart(a, n + 1)
    if kind == 0:
        a.data.as_schars[n] = <signed char>x
    elif kind == 1:
        a.data.as_ints[n] = <int>x
    elif kind == 2:
        a.data.as_uints[n] = <unsigned int>x
    else:
        a.data.as_ushorts[n] = <unsigned short>x
    return None


def add_unit(self, unit, variant, propensity, epoch, now, segment):
    """Append ``unit``'s row (first exposure now, no value yet); return the row: see
    ``UnitTable.add`` (store/units.py), the Python twin."""
    cdef array variants = self.variant
    cdef Py_ssize_t row = len(variants)
    cdef Py_ssize_t d
    self.rows[unit] = row
    self.ids.append(unit)
    _append_small(variants, variant, -128, 127, 0)
    _append_small(self.epoch, epoch, -2147483648, 2147483647, 1)
    _append_double(self.propensity, propensity)
    _append_double(self.first_seen, now)
    _append_small(self.exposures, 1, 0, 4294967295, 2)
    segs = self.segs
    if segs:
        for d in range(len(segs)):
            _append_small(segs[d], segment[d] if d < len(segment) else 0, 0, 65535, 3)
    if row >= self._cap:
        self._grow()
    return row


def expose_unit(self, unit, bucket, alloc, segment, now):
    """The A/B hot path at unit level in one lock: find or create the unit's row, choose its
    variant from its (cached) hash bucket, count and remember it. ``(seq, variant)``."""
    return expose(self._path, self, unit, bucket, alloc, segment, now)


cdef tuple expose(UnitPath p, object store, object unit, object bucket, object alloc,
                  object segment, object now):
    """:func:`expose_unit` on the store's path ``p`` (also called from routing's twin)."""
    cdef FastLock lock = p.lock
    cdef Py_ssize_t row, slot
    cdef long long seq
    cdef double u
    if lock is None:  # (a C call on None would crash) the Python twin's ``with None``
        raise TypeError("'NoneType' object does not support the context manager protocol")
    lock.take()
    try:
        found = p.rows.get(unit)
        if found is None:
            u = bucket(unit)
            i = p.choose(alloc, u)
            if not store.unit_level:  # request level: the unit is only this request
                return store._expose_locked(None, i, alloc.propensities[i], alloc.epoch,
                                            segment, now)[0], i
            row = p.units.add(unit, i, alloc.propensities[i], alloc.epoch, now, segment)
            _append_double(p.ubucket, u)
        else:
            row = found
            if not (0 <= row < len(p.ubucket) and row < len(p.exposures)):
                return _expose_known_py(p, store, unit, bucket, alloc, row, now)
            u = p.ubucket.data.as_doubles[row]
            if u != u:  # NaN: a restored row
                u = bucket(unit)
                if row < len(p.ubucket):  # (the bucket ran Python code: bounds read again)
                    p.ubucket.data.as_doubles[row] = u
                else:  # the array's own IndexError
                    p.ubucket[row] = u
            i = p.choose(alloc, u)
            # (the chooser may have run Python code too: the bound is read again)
            if row >= len(p.exposures) or p.exposures.data.as_uints[row] == 0xFFFFFFFF:
                p.exposures[row] += 1  # the array's own IndexError or OverflowError
            else:
                p.exposures.data.as_uints[row] += 1
        seq = p.seq
        p.seq = seq + 1
        p.requests[i] += 1
        if seq < p.cap:  # PendingRing.remember inlined: an append (len(ring) == seq)
            _append_longlong(p.ring_seq, seq)
            _append_double(p.ring_time, now)
            _append_longlong(p.ring_row, row)
        else:
            slot = seq % p.cap
            if slot < len(p.ring_seq) and slot < len(p.ring_time) and slot < len(p.ring_row):
                p.ring_seq.data.as_longlongs[slot] = seq
                p.ring_time.data.as_doubles[slot] = now
                p.ring_row.data.as_longlongs[slot] = row
            else:  # a ring shorter than its numbering says: the arrays' own IndexError
                p.ring_seq[slot] = seq
                p.ring_time[slot] = now
                p.ring_row[slot] = row
    finally:
        lock.give()
    return seq, i


cdef tuple _expose_known_py(UnitPath p, object store, object unit, object bucket,
                            object alloc, Py_ssize_t row, object now):
    """The known-unit half of :func:`expose` by Python indexing (lock held), for a row the
    columns do not hold: what the Python method does there (its IndexError) happens here."""
    u = p.ubucket[row]
    if u != u:
        u = p.ubucket[row] = bucket(unit)
    i = alloc.choose(u)
    p.exposures[row] += 1
    seq = p.seq
    p.seq = seq + 1
    p.requests[i] += 1
    if seq < p.cap:
        p.ring_seq.append(seq)
        p.ring_time.append(now)
        p.ring_row.append(row)
    else:
        slot = seq % p.cap
        p.ring_seq[slot] = seq
        p.ring_time[slot] = now
        p.ring_row[slot] = row
    return seq, i


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
            hist_a[v * _N_SLOTS + lo] += 1
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

