# cython: language_level=3, boundscheck=False, wraparound=False
"""The floor of issue 17's server goal: minimal compiled middlewares that do only part of what
the router's contract needs on every request, each stage adding one part to the one before.

bench_server.py ``--apps floor_pass,floor_lookup,floor_state,floor_send`` serves them
(server_apps.py builds this module with pyximport on first use). What each adds:

- ``floor_pass``: a C object whose call returns the app's coroutine (no coroutine of its own:
  the cheapest middleware a server can call);
- ``floor_lookup``: + the unit id read from the ``x-user-id`` header's bytes into a ``str`` and
  looked up in a dict of rows (a new unit appended): the sticky assignment's table;
- ``floor_state``: + a variant (a new unit's from the id's ``hash()``, kept per row in a C
  array), a decision number, a per-variant request count, a decision object (variant, model,
  number), and the request's state dict holding it (``request.state.modelrouter``);
- ``floor_send``: + a ``send`` wrapper that reads the response's status and, at the last body
  message, writes the latency and the error flag into a C array (the automatic metrics).

Each stage is a lower bound of what it stands for, not a router: no locks, no validation of
anything the server passes, no hostile-input handling, no error recorded when the app raises,
no BLAKE2b (the assignment spec's hash: ~1,500 instructions at a unit's first exposure), a
decision without an id string, no exposure ring, no journal fold. A router of the contract
must do all of ``floor_send``'s work and more, so it meets a goal below ``floor_send``'s figure
only by doing that work cheaper than this plain form of it; the router's figure minus the
floor's is what the parts the floor leaves out and the router's own design cost.
"""

from cpython.ref cimport PyObject
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf,
                               PyObject* kwnames)

cdef extern from "time.h" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* tp)
    int CLOCK_MONOTONIC


cdef bytes _HEADER = b"x-user-id"


cdef inline double _now():
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + t.tv_nsec * 1e-9


cdef inline object _call3(object f, object a, object b, object c):
    cdef PyObject* args[3]
    args[0], args[1], args[2] = <PyObject*>a, <PyObject*>b, <PyObject*>c
    return PyObject_Vectorcall(f, args, 3, NULL)


cdef object _unit(object scope):
    """The ``x-user-id`` header's value as a str (None when absent)."""
    cdef Py_ssize_t n
    for key, raw in scope["headers"]:
        if key == _HEADER:
            n = len(<bytes>raw)
            unit = PyUnicode_New(n, 127)
            memcpy(PyUnicode_DATA(unit), <const char*><bytes>raw, n)
            return unit
    return None


cdef class Pass:
    """The app's coroutine, returned: the server awaits it directly."""

    cdef object app

    def __init__(self, app):
        self.app = app

    def __call__(self, scope, receive, send):
        return _call3(self.app, scope, receive, send)


cdef class Lookup(Pass):
    """+ the unit's row found (or appended) in a dict."""

    cdef dict rows
    cdef readonly Py_ssize_t n_rows

    def __init__(self, app):
        self.app, self.rows, self.n_rows = app, {}, 0

    cdef Py_ssize_t row(self, object scope, Py_hash_t* new) except -2:
        """The unit's row (-1: no id); ``*new``: a new unit's id hash, else 0."""
        new[0] = 0
        unit = _unit(scope)
        if unit is None:
            return -1
        found = self.rows.get(unit)
        if found is not None:
            return <Py_ssize_t>found
        self.rows[unit] = self.n_rows
        self.n_rows += 1
        new[0] = hash(unit) | 1  # (never 0)
        return self.n_rows - 1

    def __call__(self, scope, receive, send):
        cdef Py_hash_t new
        self.row(scope, &new)
        return _call3(self.app, scope, receive, send)


cdef class Decision:
    """The floor's decision: the variant's name and model, and the decision number."""

    cdef public object variant, model
    cdef public long long seq


cdef class State(Lookup):
    """+ the variant (kept per row), a decision and the request's state."""

    cdef signed char* variants
    cdef Py_ssize_t cap
    cdef long long seq
    cdef long long counts[2]
    cdef tuple names, models

    def __init__(self, app, models):
        Lookup.__init__(self, app)
        self.cap, self.seq = 0, 0
        self.names, self.models = tuple(models), tuple(models.values())
        self.counts[0] = self.counts[1] = 0

    cdef object decide(self, object scope):
        cdef Py_hash_t new
        cdef Py_ssize_t r = self.row(scope, &new)
        cdef Py_ssize_t new_cap
        cdef int v = 0
        if r >= 0:
            if r >= self.cap:  # a new unit: its variant from the id's hash
                new_cap = 2 * self.cap if self.cap else 1024
                self.variants = <signed char*>realloc(self.variants, new_cap)
                if self.variants == NULL:
                    raise MemoryError()
                self.cap = new_cap
            if new:
                self.variants[r] = <signed char>((new >> 1) & 1)
            v = self.variants[r]
        self.counts[v] += 1
        self.seq += 1
        cdef Decision decision = Decision.__new__(Decision)
        decision.variant, decision.model, decision.seq = self.names[v], self.models[v], self.seq
        scope["state"] = {"modelrouter": decision}
        return decision

    def __dealloc__(self):
        free(self.variants)

    def __call__(self, scope, receive, send):
        self.decide(scope)
        return _call3(self.app, scope, receive, send)


cdef class Sink:
    """Where ``floor_send``'s wrappers write: (latency, error) pairs in a C array."""

    cdef double* values
    cdef Py_ssize_t n, cap

    cdef int push(self, double latency, double error) except -1:
        cdef Py_ssize_t new_cap
        if self.n + 2 > self.cap:
            new_cap = 2 * self.cap if self.cap else 4096
            self.values = <double*>realloc(self.values, new_cap * sizeof(double))
            if self.values == NULL:
                raise MemoryError()
            self.cap = new_cap
        self.values[self.n] = latency
        self.values[self.n + 1] = error
        self.n += 2
        return 0

    def __dealloc__(self):
        free(self.values)

    def pairs(self):
        """What was written, as ``[(latency_s, error), ...]`` (tests)."""
        return [(self.values[i], self.values[i + 1]) for i in range(0, self.n, 2)]


cdef class Send:
    """The ``send`` the app is given: the status at the start, the latency at the end."""

    cdef object send
    cdef Sink sink
    cdef double t0
    cdef long status

    def __call__(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body" and not message.get("more_body"):
            self.sink.push(_now() - self.t0, 1.0 if self.status >= 500 else 0.0)
        return self.send(message)


cdef class Metrics(State):
    """+ the send wrapper: the automatic metrics (latency, error) of every request."""

    cdef readonly Sink sink

    def __init__(self, app, models):
        State.__init__(self, app, models)
        self.sink = Sink()

    def __call__(self, scope, receive, send):
        self.decide(scope)
        cdef Send s = Send.__new__(Send)
        s.send, s.sink, s.t0, s.status = send, self.sink, _now(), 0
        return _call3(self.app, scope, receive, s)
