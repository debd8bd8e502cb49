# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twin of :meth:`DecisionTracker.open <modelrouter.store.decisions.DecisionTracker.open>`.

``store/decisions.py`` installs :func:`open` as the method when it was built
(``config/extensions.py``). It runs on every bandit decision, under the store's lock (called by
the memory store's compiled ``expose_decision``, store/hot_c.pyx, and by the Redis store), and
does the Python method's steps in the same order: the decision's group (created by the same
lines when new), its count, the ring slot (``PendingRing.remember`` inlined for the tracker's
``'b'``/``'d'`` columns: an overwrite in place, or an append while the ring fills), the slot's
training flag and reward, the unit's latest decision, the reward-0 training count of
``missing_reward="zero"`` (``_add`` inlined). The float operations are the Python method's
(built with ``-ffp-contract=off``). Whatever is not the expected type or size (a replaced
column, a subclass, a number past a C integer) goes through the same Python operations, so the
same exceptions are raised, before anything is written where the Python method would not have
written either.
"""

from cpython.array cimport array, resize_smart
from cpython.list cimport PyList_GET_SIZE

from modelrouter.store.ring import PendingRing
from modelrouter.store.rows import GroupTable, new_sums_row


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1


cdef object _tracker_type = None  # DecisionTracker (imported at the end: see there)


cdef inline bint _writable(object col, Py_ssize_t n, object fill):
    """Whether ``col`` is a ring column this twin writes in C (an ``array`` of 'd' with a float
    fill or of 'b' with a small int fill) holding at least ``n`` slots."""
    cdef char code
    cdef long x
    if type(col) is not array or len(<array>col) < n:
        return False
    code = (<array>col).ob_descr.typecode
    if code == b"d":
        return type(fill) is float
    if code == b"b" and type(fill) is int:
        x = fill
        return -128 <= x <= 127
    return False


cdef inline void _put(array col, Py_ssize_t slot, object fill):
    """``col[slot] = fill`` for a column :func:`_writable` accepted (slot inside it)."""
    if col.ob_descr.typecode == b"d":
        col.data.as_doubles[slot] = <double>fill
    else:
        col.data.as_schars[slot] = <signed char><long>fill


cdef inline void _push(array col, object fill):
    """``col.append(fill)`` for a column :func:`_writable` accepted."""
    cdef Py_ssize_t n = len(col)
    resize_smart(col, n + 1)
    _put(col, n, fill)


cdef object _remember(object ring, object seq, object now, object g):
    """``ring.remember(seq, now, g)`` (``PendingRing.remember``, store/ring.py): in C for the
    tracker's ring (its own ``'b'``/``'d'`` columns) when the slot is in place or the next
    append; anything else by the ring's method."""
    cdef long long s, r, cap
    cdef int overflow = 0
    cdef Py_ssize_t slot, size, k
    cdef array seq_a, time_a, row_a
    cdef list columns
    if (type(ring) is not PendingRing or type(seq) is not int or type(g) is not int
            or type(now) is not float):
        return ring.remember(seq, now, g)
    s = PyLong_AsLongLongAndOverflow(seq, &overflow)
    if overflow or s < 0:
        return ring.remember(seq, now, g)
    r = PyLong_AsLongLongAndOverflow(g, &overflow)
    capacity = ring.capacity
    seq_o, time_o, row_o, columns_o = ring.seq, ring.time, ring.row, ring._columns
    if (overflow or r < 0 or type(capacity) is not int or type(seq_o) is not array
            or type(time_o) is not array or type(row_o) is not array
            or type(columns_o) is not list):
        return ring.remember(seq, now, g)
    cap = PyLong_AsLongLongAndOverflow(capacity, &overflow)
    seq_a, time_a, row_a, columns = seq_o, time_o, row_o, columns_o
    if (overflow or cap < 1 or seq_a.ob_descr.typecode != b"q"
            or time_a.ob_descr.typecode != b"d" or row_a.ob_descr.typecode != b"q"):
        return ring.remember(seq, now, g)
    slot = s % cap
    size = len(seq_a)
    if slot > size or len(time_a) < size or len(row_a) < size:
        return ring.remember(seq, now, g)
    for k in range(PyList_GET_SIZE(columns)):  # every column checked before any write
        pair = columns[k]
        if type(pair) is not tuple or len(<tuple>pair) != 2:
            return ring.remember(seq, now, g)
        col, fill = pair
        if not _writable(col, slot + 1 if slot < size else size, fill):
            return ring.remember(seq, now, g)
        if slot == size and len(<array>col) != size:
            return ring.remember(seq, now, g)
    if slot < size:
        seq_a.data.as_longlongs[slot] = s
        time_a.data.as_doubles[slot] = <double>now
        row_a.data.as_longlongs[slot] = r
        for k in range(PyList_GET_SIZE(columns)):
            col, fill = <tuple>columns[k]
            _put(<array>col, slot, fill)
        return slot
    if len(time_a) != size or len(row_a) != size:
        return ring.remember(seq, now, g)
    _push_longlong(seq_a, s)
    _push_double(time_a, <double>now)
    _push_longlong(row_a, r)
    for k in range(PyList_GET_SIZE(columns)):
        col, fill = <tuple>columns[k]
        _push(<array>col, fill)
    return slot


cdef inline void _push_longlong(array a, long long v):
    cdef Py_ssize_t n = len(a)
    resize_smart(a, n + 1)
    a.data.as_longlongs[n] = v


cdef inline void _push_double(array a, double v):
    cdef Py_ssize_t n = len(a)
    resize_smart(a, n + 1)
    a.data.as_doubles[n] = v


cdef inline bint _float_at(object lst, Py_ssize_t i):
    """Whether ``lst`` is a list holding a float at ``0 <= i``."""
    return type(lst) is list and i < PyList_GET_SIZE(lst) and type((<list>lst)[i]) is float


cdef void _add_zero(object self, object t, object variant) except *:
    """``self._add(variant, 0.0, 1.0)`` (``DecisionTracker._add``): a training decision counted
    at reward 0. In C for float counters in lists; else the method itself."""
    cdef Py_ssize_t arm
    cdef double d
    cdef int overflow = 0
    c = self.counters
    if type(self) is not _tracker_type or type(variant) is not int or type(c) is not list:
        self._add(variant, 0.0, 1.0)
        return
    arm = PyLong_AsLongLongAndOverflow(variant, &overflow)
    if overflow or arm < 0:
        self._add(variant, 0.0, 1.0)
        return
    binary = t.kind == "binary"  # the _binary property (training is not None here)
    if binary:
        if PyList_GET_SIZE(c) < 2 or not (_float_at((<list>c)[0], arm)
                                            and _float_at((<list>c)[1], arm)):
            self._add(variant, 0.0, 1.0)
            return
        c0, c1 = (<list>c)[0], (<list>c)[1]
        (<list>c0)[arm] = <double>(<list>c0)[arm] + 1.0 * 0.0
        (<list>c1)[arm] = <double>(<list>c1)[arm] + 1.0 * (1.0 - 0.0)
        return
    shift = t.shift
    if (type(shift) is not float or PyList_GET_SIZE(c) < 3
            or not (_float_at((<list>c)[0], arm) and _float_at((<list>c)[1], arm)
                    and _float_at((<list>c)[2], arm))):
        self._add(variant, 0.0, 1.0)
        return
    d = 0.0 - <double>shift
    c0, c1, c2 = (<list>c)[0], (<list>c)[1], (<list>c)[2]
    (<list>c0)[arm] = <double>(<list>c0)[arm] + 1.0
    (<list>c1)[arm] = <double>(<list>c1)[arm] + 1.0 * d
    (<list>c2)[arm] = <double>(<list>c2)[arm] + 1.0 * d * d


def open(self, seq, variant, epoch, segment, tag, unit_row=None, now=0.0):
    """Start tracking decision ``seq`` (issued at ``now``); it trains unless it is a holdout
    decision: see ``DecisionTracker.open`` (store/decisions.py), the Python twin."""
    cdef Py_ssize_t gi
    cdef int overflow = 0
    cdef Py_ssize_t si
    groups = self.groups
    key = (variant, epoch, segment, tag)
    if type(groups) is GroupTable:  # GroupTable.row_of, its lines
        index = groups.index
        g = index.get(key)
        if g is None:
            keys = groups.keys
            g = len(keys)
            index[key] = g
            keys.append(key)
            groups.sums.append(new_sums_row(groups.n_metrics))
    else:
        g = groups.row_of(key)
    sums = groups.sums if type(groups) is GroupTable else self.groups.sums
    gi = -1
    if type(g) is int:
        gi = PyLong_AsLongLongAndOverflow(g, &overflow)
        if overflow:
            gi = -1
    if (type(sums) is list and 0 <= gi < PyList_GET_SIZE(sums)
            and _float_at((<list>sums)[gi], 0)):
        row = (<list>sums)[gi]
        (<list>row)[0] = <double>(<list>row)[0] + 1.0
    else:
        sums[g][0] += 1.0
    t = self.training
    train = t is not None and not tag & 1  # HOLDOUT
    zero = train and t is not None and t.rule == "zero"
    slot = _remember(self.ring, seq, now, g)
    col = self._train
    si = slot if type(slot) is int and slot >= 0 else -1
    if (type(col) is array and 0 <= si < len(<array>col)
            and (<array>col).ob_descr.typecode == b"b"):
        (<array>col).data.as_schars[si] = 1 if train else 0
    else:
        col[slot] = train
    if zero:
        col = self._r
        if (type(col) is array and 0 <= si < len(<array>col)
                and (<array>col).ob_descr.typecode == b"d"):
            (<array>col).data.as_doubles[si] = 0.0
        else:
            col[slot] = 0.0
    if unit_row is not None:
        last = self._unit_last
        if type(last) is dict:
            (<dict>last)[unit_row] = seq
        else:
            last[unit_row] = seq
    if zero:  # counts as a reward of 0 from now until its reward arrives
        _add_zero(self, t, variant)


# last: store/decisions.py imports this module at its own end, when DecisionTracker exists (and
# imported first, this module is complete before decisions.py asks it for ``open``)
from modelrouter.store.decisions import DecisionTracker as _DecisionTracker

_tracker_type = _DecisionTracker
