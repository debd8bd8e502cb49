# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True
"""Compiled twins of :meth:`DecisionTracker.open` and :meth:`DecisionTracker.apply
<modelrouter.store.decisions.DecisionTracker.apply>` (store/decisions.py).

``store/decisions.py`` installs :func:`open` and :func:`apply` as the methods when they were
built (``config/extensions.py``). Both run under the store's lock on every bandit decision
(``open`` from the memory store's compiled ``expose_decision``, store/hot_c.pyx, as a C call,
:func:`open_call`, or the Redis store; ``apply`` from the journal fold, twice, and from
feedback) and do the Python method's steps in the same order: the decision's group (created by
``GroupTable.row_of``'s lines when new; cached per arm and tag while the index is unchanged),
its count, the ring slot (``ring_remember``, the C ``PendingRing.remember`` of
store/columns_c.pyx), the slot's training flag and reward, the unit's latest decision, the
reward-0 training count (``_add`` inlined); for ``apply``, the slot (``PendingRing.find``
inlined), ``add_to_pair``'s float operations on the group's ``array('d')`` row (store/rows.py,
``pair_to_row``, built with ``-ffp-contract=off``) and ``_retrain`` (the tracker's own method)
when the value can change the decision's reward. The fold's typed entries reach ``apply``
with their number and value as C numbers (:func:`apply_typed`): no int or float object per
entry.

What they read from the tracker they read from a :class:`TrackerCore` (C fields), which the
tracker builds at the end of ``reset`` and refreshes whenever one of its attributes is set
(``DecisionTracker.__setattr__``: :class:`~modelrouter.config.extensions.CoreMirror`, except the
training counts ``pending``, ``updates`` and ``_signalled``, which they never read). The ring's
arrays and the group table's containers are read once too: both modules promise never to
replace them (they are rewritten in place). Anything that is not the expected type or range --
a tracker of another layout or class, an argument of another type, a number past a C integer,
an arm outside the counters, a metric outside the columns -- is the Python method itself,
called before anything is written, so it raises its own exceptions.
"""

from cpython.array cimport array
from cpython.list cimport PyList_GET_SIZE
from libc.string cimport memset
from cpython.object cimport PyObject

from modelrouter.store.columns_c cimport (ColumnCache, pair_to_row, ring_remember,
                                          set_tracker_apply, set_tracker_apply_typed)
from modelrouter.store.dict_fields cimport (Fields, dict_version, instance_dict, read_fields,
                                            twin_dict)

from modelrouter.store.ring import PendingRing
from modelrouter.store.rows import GroupTable, new_sums_row


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1
    int PyObject_GenericSetAttr(object obj, object name, PyObject* value) except -1

cdef object _open_py = None  # the Python methods (set at the end of this module)
cdef object _apply_py = None
cdef object _tracker_cls = None  # DecisionTracker (set at the end of this module)


cdef inline bint _typed(object col, char code):
    return type(col) is array and (<array>col).ob_descr.typecode == code


cdef class TrackerCore:
    """What ``open`` and ``apply`` read from a tracker (refreshed on every attribute set)."""

    cdef readonly bint fast
    cdef object ring, groups, n_metrics, relevant, counters, shift
    cdef array seq_a, time_a, row_a, train, r
    cdef long long cap
    cdef list columns, keys, sums, xs, ys
    cdef dict index, unit_last
    cdef tuple any_
    cdef Py_ssize_t n_arms
    cdef bint trains, rule_zero, binary
    cdef bint bits  # ``relevant`` as the bits of its metric indices (all ints in [0, 64))
    # open's groups (arms < 16 x tags < 4, epoch g_epoch, no segment; -1: none), valid while
    # the group index's version (store/dict_fields.pxd) is g_version
    cdef Py_ssize_t g_cache[64]
    cdef unsigned long long g_version
    cdef object g_epoch
    cdef unsigned long long relevant_bits
    cdef ColumnCache column_cache  # the ring's columns as ring_remember last checked them

    def refresh(self, tracker):
        """Read every field from the tracker again; ``fast`` only for the layout ``reset``
        builds (anything else: the Python methods run)."""
        cdef int overflow = 0
        self.fast = False
        self.g_version = 0  # (a new index has a new version anyway)
        d = tracker.__dict__
        ring, groups, training = d.get("ring"), d.get("groups"), d.get("training")
        xs, ys, any_ = d.get("_x"), d.get("_y"), d.get("_any")
        train, r, counters = d.get("_train"), d.get("_r"), d.get("counters")
        self.ring, self.groups, self.counters = ring, groups, counters
        if (type(ring) is not PendingRing or type(groups) is not GroupTable
                or type(xs) is not list or type(ys) is not list or type(any_) is not tuple
                or not _typed(train, b"b") or not _typed(r, b"d")
                or type(d.get("_unit_last")) is not dict
                or type(d.get("_relevant")) is not frozenset or type(counters) is not list
                or not all(type(row) is list for row in counters)):
            return
        self.xs, self.ys, self.any_, self.train, self.r = xs, ys, any_, train, r
        self.unit_last, self.relevant = d["_unit_last"], d["_relevant"]
        self.bits = all(type(m) is int and 0 <= m < 64 for m in self.relevant)
        self.relevant_bits = 0
        if self.bits:
            for m in self.relevant:
                self.relevant_bits |= 1ULL << <int>m
        self.n_arms = min([len(row) for row in counters], default=0)
        self.trains = training is not None
        if self.trains:  # a frozen dataclass: read once
            rule = getattr(training, "rule", None)
            kind = getattr(training, "kind", None)
            shift = getattr(training, "shift", None)
            if type(rule) is not str or type(kind) is not str or type(shift) is not float:
                return
            self.rule_zero, self.binary, self.shift = rule == "zero", kind == "binary", shift
        capacity, seq_a = getattr(ring, "capacity", None), getattr(ring, "seq", None)
        time_a, row_a = getattr(ring, "time", None), getattr(ring, "row", None)
        columns = getattr(ring, "_columns", None)  # the ring's columns (the tracker's own)
        index, keys = getattr(groups, "index", None), getattr(groups, "keys", None)
        sums, n_metrics = getattr(groups, "sums", None), getattr(groups, "n_metrics", None)
        if (type(capacity) is not int or not _typed(seq_a, b"q") or not _typed(time_a, b"d")
                or not _typed(row_a, b"q") or type(columns) is not list
                or type(index) is not dict or type(keys) is not list or type(sums) is not list):
            return
        self.cap = PyLong_AsLongLongAndOverflow(capacity, &overflow)
        if overflow or self.cap < 1:
            return
        self.seq_a, self.time_a, self.row_a, self.columns = seq_a, time_a, row_a, columns
        if self.column_cache is None:
            self.column_cache = ColumnCache()
        self.index, self.keys, self.sums, self.n_metrics = index, keys, sums, n_metrics
        self.fast = True


cdef frozenset _UNMIRRORED = frozenset(["pending", "updates", "_signalled"])


def tracker_setattr(self, name, value):
    """``DecisionTracker.__setattr__`` where this module was built: set the attribute, then
    refresh the tracker's C copy (as ``CoreMirror`` does), except for the training counts that
    every training update sets and the twins never read."""
    PyObject_GenericSetAttr(self, name, <PyObject*>value)  # object.__setattr__
    if name not in _UNMIRRORED:
        _refresh(self)


def tracker_delattr(self, name):
    """``DecisionTracker.__delattr__`` where this module was built: delete, then refresh."""
    PyObject_GenericSetAttr(self, name, NULL)  # object.__delattr__
    _refresh(self)


def tracker_copy(self):
    """``DecisionTracker.__copy__`` where this module was built: a shallow copy with a C copy
    of its own (a shared one would make the original's twins read what is set on the copy)."""
    new = object.__new__(type(self))
    new.__dict__.update(self.__dict__)
    if type(self.__dict__.get("_core")) is TrackerCore:
        new.__dict__["_core"] = new_core(new)
    return new


cdef void _refresh(object tracker) except *:
    core = tracker.__dict__.get("_core")
    if type(core) is TrackerCore:
        (<TrackerCore>core).refresh(tracker)


def new_core(tracker):
    """The tracker's :class:`TrackerCore` (built at the end of its ``reset``)."""
    core = TrackerCore()
    core.refresh(tracker)
    return core


cdef inline bint _float_at(object lst, Py_ssize_t i):
    """Whether ``lst`` is a list holding a float at ``0 <= i``."""
    return type(lst) is list and i < PyList_GET_SIZE(lst) and type((<list>lst)[i]) is float


cdef object _open_rest_py(object self, TrackerCore c, object seq, object variant,
                          object tag, object g, bint train, bint zero, object unit_row,
                          object now):
    """The rest of ``open`` after the group count, by the Python operations (a group number
    that is not a small int: only a corrupted group index holds one)."""
    slot = c.ring.remember(seq, now, g)
    (<object>c.train)[slot] = train
    if zero:
        (<object>c.r)[slot] = 0.0
    if unit_row is not None:
        c.unit_last[unit_row] = seq
    if zero:
        self._add(variant, 0.0, 1.0)


def open(self, seq, variant, epoch, segment, tag, unit_row=None, now=0.0):
    """Start tracking decision ``seq`` (issued at ``now``); it trains unless it is a holdout
    decision: see ``DecisionTracker.open`` (store/decisions.py), the Python twin."""
    return _open(self, _core_of(self), seq, variant, epoch, segment, tag, unit_row, now)


# the last tracker's _core and its own open (store/dict_fields.pxd)
cdef Fields _tracker
cdef tuple _TRACKER = ("_core", "open")


cdef object open_call(object tracker, object seq, object variant, object epoch, object segment,
                      object tag, object unit_row, object now):
    """``tracker.open(...)`` for the compiled ``expose_decision`` (store/hot_c.pyx): a C call
    unless the tracker is a subclass or its method was replaced (then called)."""
    if (type(tracker) is _tracker_cls
            and twin_dict(tracker, open, "open", &_tracker, _TRACKER, 1) is not None):
        core = None if _tracker.values[0] == NULL else <object>_tracker.values[0]
        return _open(tracker, core, seq, variant, epoch, segment, tag, unit_row, now)
    return tracker.open(seq, variant, epoch, segment, tag, unit_row, now)


cdef object _core_of(object tracker):
    """``tracker._core``: the instance dict's (the class's own is None), else generic."""
    if type(tracker) is _tracker_cls:
        d = instance_dict(tracker)
        if d is not None:
            read_fields(&_tracker, <dict>d, _TRACKER)
            return None if _tracker.values[0] == NULL else <object>_tracker.values[0]
    return tracker._core


cdef object _open(object self, object core, object seq, object variant, object epoch,
                  object segment, object tag, object unit_row, object now):
    """:func:`open` with the tracker's ``_core`` read."""
    cdef TrackerCore c
    cdef long long s, arm, t
    cdef int o1 = 0, o2 = 0, o3 = 0
    cdef Py_ssize_t gi, slot, ci
    cdef unsigned long long version
    cdef bint train, zero
    cdef double* row_d
    if (type(core) is not TrackerCore or not (<TrackerCore>core).fast or type(seq) is not int
            or type(variant) is not int or type(tag) is not int or type(now) is not float):
        return _open_py(self, seq, variant, epoch, segment, tag, unit_row, now)
    c = <TrackerCore>core
    s = PyLong_AsLongLongAndOverflow(seq, &o1)
    arm = PyLong_AsLongLongAndOverflow(variant, &o2)
    t = PyLong_AsLongLongAndOverflow(tag, &o3)
    train = c.trains and not (t & 1)  # HOLDOUT
    zero = train and c.rule_zero
    if o1 or o2 or o3 or s < 0 or arm < 0 or (zero and arm >= c.n_arms):
        return _open_py(self, seq, variant, epoch, segment, tag, unit_row, now)
    gi = ci = -1  # ci: the group cache's entry (arm x tag), for an int epoch and no segment
    if (0 <= arm < 16 and 0 <= t < 4 and type(epoch) is int and type(segment) is tuple
            and len(<tuple>segment) == 0):
        ci = arm * 4 + t
    version = dict_version(c.index)
    if (ci >= 0 and version != 0 and version == c.g_version and epoch is c.g_epoch
            and c.g_cache[ci] >= 0):  # the index unchanged since: index.get(key) is this
        g = gi = c.g_cache[ci]
    else:
        key = (variant, epoch, segment, tag)
        g = c.index.get(key)  # GroupTable.row_of, its lines
        if g is None:
            g = len(c.keys)
            c.index[key] = g
            c.keys.append(key)
            c.sums.append(new_sums_row(c.n_metrics))
        if type(g) is int:
            gi = PyLong_AsLongLongAndOverflow(g, &o1)
        if ci >= 0 and not o1 and gi >= 0:
            version = dict_version(c.index)
            if version != c.g_version or epoch is not c.g_epoch:
                memset(c.g_cache, 0xFF, sizeof(c.g_cache))  # every entry -1
                c.g_version, c.g_epoch = version, epoch
            c.g_cache[ci] = gi
    if (o1 or not 0 <= gi < PyList_GET_SIZE(c.sums) or not _typed(c.sums[gi], b"d")
            or len(<array>c.sums[gi]) < 1):
        (<object>c.sums)[g][0] += 1.0  # the list's own indexing (its errors)
    else:
        row_d = (<array>c.sums[gi]).data.as_doubles
        row_d[0] = row_d[0] + 1.0
    if gi < 0:  # a group number the ring cannot take in C
        return _open_rest_py(self, c, seq, variant, tag, g, train, zero, unit_row, now)
    # PendingRing.remember: the ring's C path (store/columns_c.pyx), else the ring's method
    slot = ring_remember(c.seq_a, c.time_a, c.row_a, c.columns, c.cap, s, <double>now, gi,
                         c.column_cache)
    if slot < 0:
        slot = c.ring.remember(seq, now, g)
    if 0 <= slot < len(c.train):
        c.train.data.as_schars[slot] = train
    else:  # the array's own IndexError
        (<object>c.train)[slot] = train
    if zero:
        if 0 <= slot < len(c.r):
            c.r.data.as_doubles[slot] = 0.0
        else:
            (<object>c.r)[slot] = 0.0
    if unit_row is not None:
        c.unit_last[unit_row] = seq
    if zero:  # counts as a reward of 0 from now until its reward arrives: _add(arm, 0.0, 1.0)
        _add_zero(self, c, arm, variant)


cdef void _add_zero(object self, TrackerCore c, Py_ssize_t arm, object variant) except *:
    """``self._add(variant, 0.0, 1.0)`` (``DecisionTracker._add``; ``arm`` inside every
    counter row): in C for float counters, else the method itself."""
    cdef list cs = c.counters
    cdef double d
    if c.binary:
        if PyList_GET_SIZE(cs) < 2 or not (_float_at(cs[0], arm) and _float_at(cs[1], arm)):
            self._add(variant, 0.0, 1.0)
            return
        c0, c1 = cs[0], cs[1]
        (<list>c0)[arm] = <double>(<list>c0)[arm] + 1.0 * 0.0
        (<list>c1)[arm] = <double>(<list>c1)[arm] + 1.0 * (1.0 - 0.0)
        return
    if PyList_GET_SIZE(cs) < 3 or not (_float_at(cs[0], arm) and _float_at(cs[1], arm)
                                      and _float_at(cs[2], arm)):
        self._add(variant, 0.0, 1.0)
        return
    d = 0.0 - <double>c.shift
    c0, c1, c2 = cs[0], cs[1], cs[2]
    (<list>c0)[arm] = <double>(<list>c0)[arm] + 1.0
    (<list>c1)[arm] = <double>(<list>c1)[arm] + 1.0 * d
    (<list>c2)[arm] = <double>(<list>c2)[arm] + 1.0 * d * d


def apply(self, seq, m, value):
    """Add a validated value of metric ``m`` to decision ``seq`` if it is tracked: see
    ``DecisionTracker.apply`` (store/decisions.py), the Python twin."""
    return _apply(self, _core_of(self), seq, m, value)


# the last tracker's _core and its own apply, for the fold's C call (store/dict_fields.pxd)
cdef Fields _applier
cdef tuple _APPLIER = ("_core", "apply")


cdef object apply_call(object tracker, object seq, object m, object value):
    """``tracker.apply(seq, m, value)`` for the compiled journal fold (store/columns_c.pyx,
    which this module registers it with): a C call unless the tracker is a subclass or its
    method was replaced on the class or the instance (then that method is called)."""
    if (type(tracker) is _tracker_cls
            and twin_dict(tracker, apply, "apply", &_applier, _APPLIER, 1) is not None):
        core = None if _applier.values[0] == NULL else <object>_applier.values[0]
        return _apply(tracker, core, seq, m, value)
    return tracker.apply(seq, m, value)


cdef int apply_typed(object tracker, long long seq, object m, double value) except -1:
    """:func:`apply_call` for the fold's typed entries (a decision number and a value in C):
    no int or float object made unless the tracker's Python code needs one."""
    cdef long long mi
    cdef int o = 0
    if (type(tracker) is _tracker_cls
            and twin_dict(tracker, apply, "apply", &_applier, _APPLIER, 1) is not None):
        core = None if _applier.values[0] == NULL else <object>_applier.values[0]
        if type(core) is TrackerCore and (<TrackerCore>core).fast and type(m) is int:
            mi = PyLong_AsLongLongAndOverflow(m, &o)
            if not o and _apply_core(tracker, <TrackerCore>core, seq, mi, m, value) == 0:
                return 0
        _apply(tracker, core, seq, m, value)
        return 0
    tracker.apply(seq, m, value)
    return 0


cdef object _apply(object self, object core, object seq, object m, object value):
    """:func:`apply` with the tracker's ``_core`` read."""
    cdef long long s, mi
    cdef int o1 = 0, o2 = 0
    if (type(core) is not TrackerCore or not (<TrackerCore>core).fast or type(seq) is not int
            or type(m) is not int or type(value) is not float):
        return _apply_py(self, seq, m, value)
    s = PyLong_AsLongLongAndOverflow(seq, &o1)
    mi = PyLong_AsLongLongAndOverflow(m, &o2)
    if o1 or o2 or _apply_core(self, <TrackerCore>core, s, mi, m, value) != 0:
        return _apply_py(self, seq, m, value)


cdef int _apply_core(object self, TrackerCore c, long long s, long long mi, object m,
                     double v) except -1:
    """The Python twin's ``apply(s, m, v)`` on the core's arrays (``m`` the int ``mi``):
    0 when done, 1 having changed nothing where the twin's own lines must run (a metric
    past the columns, a ring row past its arrays, columns or a row of other types)."""
    cdef Py_ssize_t slot, g
    cdef bint relevant, train
    if mi < 0 or mi >= PyList_GET_SIZE(c.xs) or mi >= PyList_GET_SIZE(c.ys) or mi >= len(c.any_):
        return 1
    if s < 0:  # PendingRing.find
        return 0
    slot = s % c.cap
    if slot >= len(c.seq_a) or c.seq_a.data.as_longlongs[slot] != s:
        return 0  # an A/B decision, or one no longer in the ring
    if slot >= len(c.row_a) or slot >= len(c.train):
        return 1
    g = c.row_a.data.as_longlongs[slot]
    if not 0 <= g < PyList_GET_SIZE(c.sums):
        return 1
    xs, ys, row = c.xs[mi], c.ys[mi], c.sums[g]
    if (type(xs) is not array or type(ys) is not array or type(row) is not array
            or not pair_to_row(xs, ys, slot, row, mi, v, c.any_[mi])):
        return 1
    if slot < len(c.train):  # (again: any_'s truth test may have run Python code)
        train = c.train.data.as_schars[slot] != 0
    else:  # the array's own IndexError
        train = (<object>c.train)[slot]
    if train:  # and m in self._relevant (as bits when they hold it)
        relevant = (c.relevant_bits >> mi) & 1 if c.bits and mi < 64 else m in c.relevant
        if relevant:
            self._retrain(slot, (<object>c.keys)[g][0])
    return 0


# last: store/decisions.py imports this module at its own end, when DecisionTracker exists (and
# imported first, this module is complete before decisions.py asks it for its twins)
from modelrouter.config.extensions import python_method
from modelrouter.store.decisions import DecisionTracker as _DecisionTracker


def _python(name):
    """The Python method ``name`` (installed twins: from ``python_method``; while
    decisions.py installs ``open``, ``apply`` is still its own)."""
    try:
        return python_method(_DecisionTracker, name)
    except KeyError:
        return _DecisionTracker.__dict__[name]


_open_py = _python("open")
_apply_py = _python("apply")
_tracker_cls = _DecisionTracker
set_tracker_apply(apply_call)  # the fold calls apply in C from now on
set_tracker_apply_typed(apply_typed)
