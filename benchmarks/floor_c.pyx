# cython: language_level=3, boundscheck=False, wraparound=False
"""The floor of issue 17's server goal: minimal compiled middlewares that do only part of what
the router's contract needs on every request, each stage adding one part to the one before.

bench_server.py ``--apps floor_pass,floor_lookup,floor_state,floor_send,floor_fast`` serves them
(server_apps.py builds this module with pyximport on first use). What each adds:

- ``floor_pass``: a C object whose call returns the app's coroutine (no coroutine of its own:
  the cheapest middleware a server can call);
- ``floor_lookup``: + the unit id read from the ``x-user-id`` header's bytes into a ``str`` and
  looked up in a dict of rows (a new unit appended): the sticky assignment's table;
- ``floor_state``: + a variant (a new unit's from the id's ``hash()``, kept per row in a C
  array), a decision number, a per-variant request count, a decision object (variant, model,
  number), and the request's state dict holding it (``request.state.modelrouter``);
- ``floor_send``: + a ``send`` wrapper that reads the response's status and, at the last body
  message, writes the latency and the error flag into a C array (the automatic metrics);
- ``floor_fast``: ``floor_send`` in the cheaper forms the router uses (the wrapper called
  through a vectorcall slot, the message's type compared in C).

Each stage is a lower bound of what it stands for, not a router: no locks, no validation of
anything the server passes, no hostile-input handling, no error recorded when the app raises,
no BLAKE2b (the assignment spec's hash: ~1,500 instructions at a unit's first exposure), a
decision without an id string, no exposure ring, no journal fold. A router of the contract
must do all of ``floor_send``'s work and more, so it meets a goal below ``floor_send``'s figure
only by doing that work cheaper than this plain form of it; the router's figure minus the
floor's is what the parts the floor leaves out and the router's own design cost.
"""

cimport cython
from cpython.ref cimport PyObject
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf,
                               PyObject* kwnames)

cdef extern from *:
    """
    /* a vectorcall slot for FastSend (Cython declares none for a def __call__); the router's
       own setter (asgi/middleware_c.pyx) is static to its module, and the floor imports
       nothing of the router's, so that it measures only its own code */
    static int floor_set_vectorcall(PyObject *type, Py_ssize_t offset) {
        PyTypeObject *t = (PyTypeObject *)type;
        t->tp_vectorcall_offset = offset;
        t->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
        PyType_Modified(t);
        return 0;
    }
    """
    int floor_set_vectorcall(object type, Py_ssize_t offset) except -1

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


cdef inline bint _is(object kind, const char* name, size_t n) except -1:
    """``kind == name``: a compact ASCII str's characters compared in C."""
    if type(kind) is str and PyUnicode_IS_COMPACT_ASCII(kind):
        return (<size_t>PyUnicode_GET_LENGTH(kind) == n
                and memcmp(PyUnicode_DATA(kind), name, n) == 0)
    return kind == name[:n].decode("ascii")


@cython.final  # (its vectorcall slot is read at a fixed offset)
cdef class FastSend:
    """``Send`` in the forms the router uses: called through a vectorcall slot (no argument
    tuple), the message's dict read without a method call, its type compared in C."""

    cdef void* _vectorcall
    cdef object send
    cdef Sink sink
    cdef double t0
    cdef long status

    def __call__(self, message):
        return _fast_message(self, message)


cdef object _fast_message(FastSend self, object message):
    cdef PyObject* arg
    if type(message) is not dict:
        raise TypeError("the floor takes dict messages only")
    kind = (<dict>message)["type"]
    if _is(kind, b"http.response.start", 19):
        self.status = (<dict>message)["status"]
    elif _is(kind, b"http.response.body", 18) and not (<dict>message).get("more_body"):
        self.sink.push(_now() - self.t0, 1.0 if self.status >= 500 else 0.0)
    arg = <PyObject*>message
    return PyObject_Vectorcall(self.send, &arg, 1, NULL)


cdef object _fast_vectorcall(object self, PyObject** args, size_t nargsf, PyObject* kwnames):
    if kwnames != NULL or PyVectorcall_NARGS(nargsf) != 1:
        raise TypeError("send(message) takes one positional argument")
    return _fast_message(<FastSend>self, <object>args[0])


cdef FastSend _probe = FastSend.__new__(FastSend)
floor_set_vectorcall(FastSend, <char*>&_probe._vectorcall - <char*><PyObject*>_probe)


cdef class FastMetrics(Metrics):
    """``Metrics`` with :class:`FastSend`: the contract's minimum in the router's cheaper
    forms (``floor_fast``)."""

    def __call__(self, scope, receive, send):
        self.decide(scope)
        cdef FastSend s = FastSend.__new__(FastSend)
        s._vectorcall = <void*>_fast_vectorcall
        s.send, s.sink, s.t0, s.status = send, self.sink, _now(), 0
        return _call3(self.app, scope, receive, s)
