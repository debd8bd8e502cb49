# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twins of the memory store's hot path (``store/unit_path.py`` says what each is).

- :class:`FastLock`: the store's lock, a ``threading.Lock`` whose uncontended take and give
  are C stores under the GIL (the C code takes it directly; a contended take waits without the
  GIL).
- :class:`UnitPath`: the columns ``expose_unit`` touches, as typed C fields.
- :func:`expose_unit`, :func:`expose_decision`: ``MemoryStore``'s exposures on those fields
  (``expose_decision_call``: the latter as the bandit route's C call, routing/bandit_c.pyx).
- :func:`add_unit`: ``UnitTable.add`` (a new unit's row); ``add_row``, the same steps as the
  exposures' C call, reading the table's slots at their offsets (store/slot_fields.pxd) while
  its class is unchanged: a first exposure without a method call or nine attribute lookups.

The column arithmetic (journal fold, ring slots, group sums) is in ``store/columns_c.pyx``.

Each does exactly what its Python twin does, in the same order and with the same float
operations (the tests run both on the same requests and compare every column); what allocates
or can fail calls the same Python code as the twin.
"""

cimport cython
from cpython.array cimport array
from cpython.pythread cimport (NOWAIT_LOCK, PY_LOCK_ACQUIRED, PY_LOCK_INTR,
                               PyThread_acquire_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_release_lock, PyThread_type_lock)

from cpython.dict cimport PyDict_GetItemWithError
from cpython.list cimport PyList_GET_ITEM, PyList_SET_ITEM
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.object cimport PyObject

from modelrouter.store.array_exports cimport append_double, append_longlong, append_small
from modelrouter.store.decisions_c cimport open_call
from modelrouter.store.dict_fields cimport (Fields, field_or_attr, instance_dict, read_fields,
                                            twin_dict)
from modelrouter.store.slot_fields cimport Slots, slot_at, slots_of


cdef extern from "Python.h":
    PyObject* True_ "Py_True"
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1
    # without Cython's ``except -1``: FastLock._wait cleans up before it propagates the error
    int check_signals "PyErr_CheckSignals" ()

cdef extern from "pythread.h":
    int PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds,
                                    int intr_flag) nogil

import os
from math import ceil
from operator import index as _index
from sys import version_info as _version
from threading import TIMEOUT_MAX as _TIMEOUT_MAX
from time import monotonic as _monotonic
from weakref import WeakSet

cdef double _NAN = float("nan")
# threading.Lock.acquire reads ``blocking`` as an integer up to 3.11, as a truth value from 3.12
cdef bint _BLOCKING_IS_BOOL = _version >= (3, 12)
# every live FastLock, for the forked child's reset (FastLock.after_fork)
_LOCKS = WeakSet()


def _after_fork_in_child():
    for lock in list(_LOCKS):
        lock.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


cdef class FastLock:
    """A non-reentrant lock (``threading.Lock``'s interface) whose uncontended ``with`` is two C
    stores: no argument parsing and no call into the thread library.

    Its state is ``_held`` and ``_waiters``, read and written only with the GIL held: every
    caller holds it (the compiled store code, called from Python, and these methods), and
    nothing between a test and a set of them can release it. The module runs with a GIL:
    CPython enables it for an extension that does not declare free-threading support, as this
    one does not.

    A thread that finds the lock held waits without the GIL, as ``threading.Lock`` does, on
    ``_lock``: a PyThread lock used as a hand-over signal, kept taken. A give while someone
    waits **hands the lock over**: ``_held`` stays set, one waiter is counted out of
    ``_waiters`` and the signal is released; whichever waiter takes the signal owns the lock.
    Without the hand-over a woken waiter would have to win the GIL at a moment the lock is
    free, while the thread that gave it keeps the GIL for its switch interval and takes the
    lock again hundreds of times: waiters starved for seconds (8 threads: a request waited up
    to 0.77 s, a control-plane change ~7 s; tests/asgi/test_compiled_attack_lock.py). At most
    one hand-over is outstanding (its receiver owns the lock until it gives), so the signal
    never needs to count past one. A timed wait that runs out tests the signal once more with
    the GIL held: a hand-over that raced its timeout is taken, not lost.

    Python-level waits (``acquire``, ``with``) are interruptible like ``threading.Lock``'s: a
    signal runs its handler, and an exception from it ends the wait. The C code's ``take``
    waits uninterruptibly (it cannot raise): its critical sections are short.

    After a fork the child forgets the parent's waiters (they are threads it does not have)
    and gets a fresh signal (``after_fork``). A lock held by another thread at the fork stays
    held, as a ``threading.Lock`` does, unless the fork waited for it: the store's lock is
    tracked by store/forksafe.py, which resets it in the child before releasing it."""

    def __cinit__(self):
        self._lock = <void*>PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("cannot allocate a lock")
        # the signal starts taken: a waiter blocks on it until a give hands the lock over
        PyThread_acquire_lock(<PyThread_type_lock>self._lock, NOWAIT_LOCK)
        _LOCKS.add(self)

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(<PyThread_type_lock>self._lock)

    cdef void take(self) noexcept:
        if not self._held:
            self._held = True
            return
        self._wait(-1, False)

    cdef void give(self) noexcept:
        if self._waiters:  # hand over: _held stays set for the waiter that takes the signal
            self._waiters -= 1
            PyThread_release_lock(<PyThread_type_lock>self._lock)
        else:
            self._held = False

    cdef int _enter(self) except -1:
        """``take`` for Python callers: a wait that a signal's handler can end (its error)."""
        if not self._held:
            self._held = True
            return 1
        return self._wait(-1, True)

    cdef bint _handed(self) noexcept:
        """Whether a hand-over is waiting on the signal (taken by this call): GIL held."""
        return PyThread_acquire_lock(<PyThread_type_lock>self._lock, NOWAIT_LOCK) == 1

    cdef int _wait(self, long long micros, bint intr) except -1:
        """Wait until a give hands the lock over: 1; 0 when ``micros`` (>= 0) elapsed first
        (a negative ``micros``: no limit). ``intr``: a signal runs its handler, and the
        handler's exception ends the wait (the lock given on if it arrived meanwhile)."""
        cdef int r
        cdef double deadline = 0.0
        if micros >= 0:
            deadline = _monotonic() + micros / 1e6
        self._waiters += 1
        while True:
            with nogil:
                r = PyThread_acquire_lock_timed(<PyThread_type_lock>self._lock, micros, intr)
            if r == PY_LOCK_ACQUIRED:
                return 1  # the giver kept _held set and counted this thread out
            if r == PY_LOCK_INTR and check_signals() < 0:
                if self._handed():  # the lock arrived with the signal: pass it on
                    self.give()
                else:
                    self._waiters -= 1
                return -1
            if self._handed():  # a hand-over raced the timeout or the signal
                return 1
            if micros >= 0:
                micros = <long long>ceil((deadline - _monotonic()) * 1e6)
                if micros <= 0:
                    self._waiters -= 1
                    return 0

    def after_fork(self):
        """In a forked child only: no waiters (their threads stayed in the parent), a new
        signal. The held flag is left as it is. Once per process: store/forksafe.py resets
        the store's lock before releasing it, and this module's own hook resets every lock;
        whichever runs second must not free a signal a thread of the child may wait on."""
        cdef long pid = os.getpid()
        if self._reset_in == pid:
            return
        self._reset_in = pid
        cdef void* fresh = <void*>PyThread_allocate_lock()
        if fresh == NULL:
            raise MemoryError("cannot allocate a lock")
        PyThread_acquire_lock(<PyThread_type_lock>fresh, NOWAIT_LOCK)
        PyThread_free_lock(<PyThread_type_lock>self._lock)  # no thread here waits on it
        self._lock, self._waiters = fresh, 0

    @cython.binding(False)
    def acquire(self, blocking=True, timeout=-1):
        """``threading.Lock.acquire``: True when taken."""
        cdef long long micros
        if not (blocking if _BLOCKING_IS_BOOL else _index(blocking)):  # as threading.Lock
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            if self._held:
                return False
            self._held = True
            return True
        elif timeout == -1:
            self._enter()
            return True
        if timeout < 0:
            raise ValueError("timeout value must be a non-negative number")
        if timeout > _TIMEOUT_MAX:  # as threading.Lock (else a wait of centuries)
            raise OverflowError("timeout value is too large")
        micros = <long long>ceil(timeout * 1e6)  # rounded up, as threading.Lock does
        if not self._held:
            self._held = True
            return True
        return self._wait(micros, True) == 1

    @cython.binding(False)
    def release(self):
        """``threading.Lock.release``; RuntimeError when not held."""
        if not self._held:
            raise RuntimeError("release unlocked lock")
        self.give()

    @cython.binding(False)
    def locked(self):
        return self._held

    @cython.binding(False)
    def __enter__(self):
        self._enter()
        return True

    @cython.binding(False)
    def __exit__(self, exc_type, exc_value, traceback):
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
        cdef Py_ssize_t lo
        if alloc is not self._alloc:
            layout = getattr(alloc, "layout", None)
            if layout is None:
                return alloc.choose(u)
            bounds, owners = layout()
            self._bounds, self._owners = array("d", bounds), array("q", owners)
            self._alloc = alloc
        lo = bisect_right_d(self._bounds, u)
        if lo >= len(self._owners):  # past every bound: the allocation's own IndexError
            return alloc.choose(u)
        return self._owners.data.as_longlongs[lo]


cdef inline bint _add_one(list counts, object i) except -1:
    """``counts[i] += 1`` in C where no Python code can run (an int item at an int index
    within the list): True when done, else False (the caller indexes as Python does)."""
    cdef long long k
    cdef int overflow = 0
    if counts is None or type(i) is not int:
        return False
    k = PyLong_AsLongLongAndOverflow(i, &overflow)
    if overflow or not 0 <= k < len(counts):
        return False
    item = <object>PyList_GET_ITEM(counts, k)
    if type(item) is not int:
        return False
    new = item + 1
    Py_INCREF(new)  # (the list takes this reference and gives back the item's)
    PyList_SET_ITEM(counts, k, new)
    Py_DECREF(item)
    return True


def add_unit(self, unit, variant, propensity, epoch, now, segment):
    """Append ``unit``'s row (first exposure now, no value yet); return the row: see
    ``UnitTable.add`` (store/units.py), the Python twin."""
    cdef array variants = self.variant
    cdef Py_ssize_t row = len(variants)
    cdef Py_ssize_t d
    self.rows[unit] = row
    self.ids.append(unit)
    append_small(variants, variant, -128, 127, 0)
    append_small(self.epoch, epoch, -2147483648, 2147483647, 1)
    append_double(self.propensity, propensity)
    append_double(self.first_seen, now)
    append_small(self.exposures, 1, 0, 4294967295, 2)
    segs = self.segs
    if segs:
        for d in range(len(segs)):
            append_small(segs[d], segment[d] if d < len(segment) else 0, 0, 65535, 3)
    if row >= self._cap:
        self._grow()
    return row


# UnitTable's slots that add_unit reads, at their offsets (slot_fields.pxd)
cdef Slots _table
cdef tuple _TABLE = ("rows", "ids", "variant", "epoch", "propensity", "first_seen",
                     "exposures", "segs", "_cap")


cdef Py_ssize_t add_row(object units, object unit, object variant, object propensity,
                        object epoch, object now, object segment) except -1:
    """``units.add(unit, ...)`` for the exposures below: :func:`add_unit`'s steps without its
    call and attribute lookups where the table is a plain ``UnitTable`` whose ``add`` is
    :func:`add_unit`, its columns of their own types and the arguments of the types a route
    passes (an exact ``str`` id, whose hash and comparison run no Python code; int variant and
    epoch; float propensity and time; a tuple of int segment codes). Anything else is the
    method's call, before any column is touched (a replaced ``add``, a subclass, a column of
    another type, an unset slot, a hostile argument), so errors and side effects are the
    twin's. Between the slot reads and the last append no Python code can run, so the
    columns read are the ones written."""
    cdef PyObject* v[9]
    cdef Py_ssize_t row, d, n_segs, k
    cdef long long cap
    cdef int overflow = 0
    if (type(unit) is not str or type(variant) is not int or type(epoch) is not int
            or type(propensity) is not float or type(now) is not float
            or type(segment) is not tuple
            or not slots_of(&_table, units, "add", add_unit, _TABLE)):
        return units.add(unit, variant, propensity, epoch, now, segment)
    for k in range(9):
        v[k] = slot_at(units, _table.offset[k])
        if v[k] == NULL:  # an unset column: the method's AttributeError, at its step
            return units.add(unit, variant, propensity, epoch, now, segment)
    rows, ids, segs, cap_obj = <object>v[0], <object>v[1], <object>v[7], <object>v[8]
    if (type(rows) is not dict or type(ids) is not list or type(segs) is not list
            or type(cap_obj) is not int):
        return units.add(unit, variant, propensity, epoch, now, segment)
    for k in range(2, 7):
        if type(<object>v[k]) is not array:
            return units.add(unit, variant, propensity, epoch, now, segment)
    n_segs = len(<list>segs)
    for d in range(n_segs):
        if type((<list>segs)[d]) is not array or (
                d < len(<tuple>segment) and type((<tuple>segment)[d]) is not int):
            return units.add(unit, variant, propensity, epoch, now, segment)
    # the twin's steps, in its order (only the appends' own errors can stop them)
    row = len(<array>v[2])
    (<dict>rows)[unit] = row
    (<list>ids).append(unit)
    append_small(<array>v[2], variant, -128, 127, 0)
    append_small(<array>v[3], epoch, -2147483648, 2147483647, 1)
    append_double(<array>v[4], propensity)
    append_double(<array>v[5], now)
    append_small(<array>v[6], 1, 0, 4294967295, 2)
    for d in range(n_segs):
        append_small((<list>segs)[d], (<tuple>segment)[d] if d < len(<tuple>segment) else 0,
                     0, 65535, 3)
    cap = PyLong_AsLongLongAndOverflow(cap_obj, &overflow)
    if overflow < 0 or (overflow == 0 and row >= cap):
        units._grow()
    return row


def expose_unit(self, unit, bucket, alloc, segment, now):
    """The A/B hot path at unit level in one lock: find or create the unit's row, choose its
    variant from its (cached) hash bucket, count and remember it. ``(seq, variant)``."""
    cdef long long seq = 0
    i = expose(self._path, self, unit, bucket, NULL, alloc, segment, now, &seq)
    return seq, i


cdef object expose(UnitPath p, object store, object unit, object bucket, BucketFn bucket_c,
                   object alloc, object segment, object now, long long* seq_out):
    """:func:`expose_unit` on the store's path ``p`` (also called from routing's twin): the
    variant's index, its decision number written to ``*seq_out`` (no tuple per request).
    ``bucket_c``: ``bucket(unit)`` as a C call (NULL: the Python call)."""
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
            u = bucket(unit) if bucket_c == NULL else bucket_c(bucket, unit)
            i = p.choose(alloc, u)
            if not store.unit_level:  # request level: the unit is only this request
                seq_out[0] = store._expose_locked(None, i, alloc.propensities[i], alloc.epoch,
                                                  segment, now)[0]
                return i
            if alloc is not p._palloc:  # (an allocation is never changed once in force)
                p._props, p._epoch = alloc.propensities, alloc.epoch
                p._palloc = alloc
            row = add_row(p.units, unit, i, p._props[i], p._epoch, now, segment)
            append_double(p.ubucket, u)
        else:
            row = found
            if not (0 <= row < len(p.ubucket) and row < len(p.exposures)):
                return _expose_known_py(p, store, unit, bucket, alloc, row, now, seq_out)
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
        if not _add_one(p.requests, i):
            p.requests[i] += 1  # the list's own indexing (its errors)
        if seq < p.cap:  # PendingRing.remember inlined: an append (len(ring) == seq)
            append_longlong(p.ring_seq, seq)
            append_double(p.ring_time, now)
            append_longlong(p.ring_row, row)
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
    seq_out[0] = seq
    return i


def expose_decision(self, unit, variant, propensity, epoch, segment=(), now=None, tag=0):
    """``MemoryStore.expose_decision`` (the bandit's exposure and its decision opened in the
    tracker, in one lock) for a unit-level store and a unit id: the Python method's steps on
    the store's path; anything else is the Python method (``_expose_decision_py``)."""
    d = instance_dict(self)
    if d is None:  # no instance dict: the Python method (its AttributeError)
        return self._expose_decision_py(unit, variant, propensity, epoch, segment, now, tag)
    return _expose_decision(self, <dict>d, unit, variant, propensity, epoch, segment, now, tag)


# the last store's _path, unit_level, _decisions and its own expose_decision (dict_fields.pxd)
cdef Fields _store
cdef tuple _STORE = ("_path", "unit_level", "_decisions", "expose_decision")


cdef object expose_decision_call(object store, object unit, object variant, object propensity,
                                 object epoch, object segment, object now, object tag):
    """``store.expose_decision(...)`` for the bandit's compiled route (a ``MemoryStore``): a C
    call unless its class or instance has another method (a patched one: called)."""
    d = twin_dict(store, expose_decision, "expose_decision", &_store, _STORE, 3)
    if d is not None:
        return _expose_decision(store, <dict>d, unit, variant, propensity, epoch, segment, now,
                                tag)
    return store.expose_decision(unit, variant, propensity, epoch, segment, now, tag)


cdef object _expose_decision(object self, dict d, object unit, object variant,
                             object propensity, object epoch, object segment, object now,
                             object tag):
    """:func:`expose_decision` on the store's instance dict ``d`` (its fields read there)."""
    cdef UnitPath p
    cdef FastLock lock
    cdef Py_ssize_t row, slot, size
    cdef long long seq
    read_fields(&_store, d, _STORE)  # (absent fields: the Python method)
    path = None if _store.values[0] == NULL else <object>_store.values[0]
    if (unit is None or type(variant) is not int or _store.values[1] != <PyObject*>True_
            or type(path) is not UnitPath or (<UnitPath>path).lock is None
            or (<UnitPath>path).cap < 1):
        return self._expose_decision_py(unit, variant, propensity, epoch, segment, now, tag)
    p = <UnitPath>path
    lock = p.lock
    if now is None:
        now = field_or_attr(PyDict_GetItemWithError(d, "clock"), self, "clock")()
    lock.take()
    try:
        seq = p.seq
        p.seq = seq + 1
        seq_obj = <object>seq  # (one int object)
        if not _add_one(p.requests, variant):
            p.requests[variant] += 1  # the list's own indexing (its errors)
        known = p.rows.get(unit)
        if known is None:
            row = add_row(p.units, unit, variant, propensity, epoch, now, segment)
            append_double(p.ubucket, _NAN)
        else:
            row = known
            if not (0 <= row < len(p.exposures)) or p.exposures.data.as_uints[row] == 0xFFFFFFFF:
                p.exposures[row] += 1  # the array's own indexing: its error, or a wrap-around
            else:
                p.exposures.data.as_uints[row] += 1
        # PendingRing.remember inlined (a unit-level store's ring has no extra columns)
        slot = seq % p.cap
        size = len(p.ring_seq)
        if slot < size and slot < len(p.ring_time) and slot < len(p.ring_row):
            p.ring_seq.data.as_longlongs[slot] = seq
            p.ring_time.data.as_doubles[slot] = now
            p.ring_row.data.as_longlongs[slot] = row
        elif slot == size and len(p.ring_time) == size and len(p.ring_row) == size:
            append_longlong(p.ring_seq, seq)
            append_double(p.ring_time, now)
            append_longlong(p.ring_row, row)
        else:
            ring = field_or_attr(PyDict_GetItemWithError(d, "ring"), self, "ring")
            ring.remember(seq, now, row)
        read_fields(&_store, d, _STORE)  # (again: Python code may have run)
        decisions = field_or_attr(_store.values[2], self, "_decisions")
        if decisions is not None:  # DecisionTracker.open: a C call where it is the twin's
            open_call(decisions, seq_obj, variant, epoch, segment, tag, row, now)
    finally:
        lock.give()
    return seq_obj


cdef object _expose_known_py(UnitPath p, object store, object unit, object bucket,
                             object alloc, Py_ssize_t row, object now, long long* seq_out):
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
    seq_out[0] = seq
    return i
