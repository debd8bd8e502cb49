# cython: language_level=3, boundscheck=False, wraparound=False, binding=True
"""Compiled twin of :meth:`RoutingMiddleware.__call__ <modelrouter.asgi.middleware.RoutingMiddleware.__call__>`.

The same steps in the same order on the same middleware object (``asgi/middleware.py`` installs
:func:`call` as ``RoutingMiddleware.__call__`` when it was built; ``config/extensions.py``):
pass-through of what is not experiment traffic, the unit id, the decision, the request's state,
the app, and the automatic metrics when the last body byte is sent. What it reads from the
middleware it reads from a ``MiddlewareCore`` (C fields, ``asgi/middleware_core_c.pyx``), and a
unit id in a header of printable ASCII is read from the header's bytes.

No coroutine of the router's own stands between the server and the app. :func:`install_call`
points the middleware class's call slot at :func:`_entry`, which does everything before the
app runs when the server calls the middleware, and returns what the server then awaits: the
app's own awaitable for a request that is not counted, else a :class:`Flight`, one C object
that is both the ``send`` the app is given (called through its vectorcall slot: no argument
tuple per message) and the awaitable that drives the app's coroutine
(the interpreter's ``await`` steps the app through it with one C call: its ``am_send`` slot
on CPython 3.10-3.11, its ``__next__`` from 3.12, where ``await`` no longer reads ``am_send``)
and records a server error if the app raises. ``__call__`` itself stays a coroutine function
(:func:`call`, awaiting the same entry): servers read it to tell ASGI 3 from ASGI 2, and a
subclass or a patched ``__call__`` goes through it. One difference from the Python method,
which runs everything at its first step: here routing runs (and a refusal or a store error is
raised) when the middleware is called, before anything awaits it.
"""

from asyncio import CancelledError
from collections.abc import Coroutine

cimport cython
from cpython.ref cimport PyObject, Py_XDECREF


cdef extern from "Python.h":
    int PyIter_Send(object iterator, object arg, PyObject** presult) except -1
    long PyLong_AsLongAndOverflow(object obj, int* overflow) except? -1
    long long PyLong_AsLongLongAndOverflow(object obj, int* overflow) except? -1
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf,
                               PyObject* kwnames)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyList_GET_SIZE(object o)

cdef extern from "string.h":
    int memcmp(const void* a, const void* b, size_t n)

cdef extern from *:
    """
    /* Flight's am_send (the slot ``await`` uses on CPython 3.10-3.11) and a class's tp_call:
       Cython declares neither slot for a def method, so they are set once at import. */
    static int modelrouter_set_am_send(PyObject *type, void *send) {
        PyTypeObject *t = (PyTypeObject *)type;
        if (t->tp_as_async == NULL) {
            PyErr_SetString(PyExc_SystemError, "Flight has no async slots");
            return -1;
        }
        t->tp_as_async->am_send = (sendfunc)send;
    #ifdef Py_TPFLAGS_HAVE_AM_SEND
        t->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
    #endif
        return 0;
    }
    static int modelrouter_set_vectorcall(PyObject *type, Py_ssize_t offset) {
        PyTypeObject *t = (PyTypeObject *)type;
        t->tp_vectorcall_offset = offset;
        t->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
        PyType_Modified(t);
        return 0;
    }
    static int modelrouter_set_tp_call(PyObject *type, void *call) {
        ((PyTypeObject *)type)->tp_call = (ternaryfunc)call;
        return 0;
    }
    """
    int modelrouter_set_am_send(object type, void* send) except -1
    int modelrouter_set_tp_call(object type, void* call) except -1
    int modelrouter_set_vectorcall(object type, Py_ssize_t offset) except -1

from modelrouter.asgi.lifespan import run_lifespan
from modelrouter.asgi.responses import send_error
from modelrouter.exceptions import UnitIdError
from modelrouter.routing.tokens import TOKEN_HEADER

from modelrouter.asgi.middleware_core_c cimport (MiddlewareCore, awaitable_of, counted,
                                                exception_of, header_unit, route_is_twin,
                                                target_of)
from modelrouter.routing.clocks cimport perf_now
from modelrouter.routing.experiment_c cimport RouteCore
from modelrouter.store.columns_c cimport push_entry
from modelrouter.store.dict_fields cimport Fields, field_or_attr, instance_dict, read_fields

cdef bytes _TOKEN = TOKEN_HEADER.encode("latin-1")
cdef Fields _mw  # the last middleware's _core, read from its instance dict (dict_fields.pxd)
cdef tuple _MW = ("_core",)
cdef object _ONE = 1.0, _ZERO = 0.0


@cython.final  # (no subclass: its vectorcall slot is read at a fixed offset)
cdef class Flight:
    """One counted request in flight, as one object: the ``send`` the app is given (records
    the automatic metrics when the last body byte is sent, adds the signed token to the
    response headers) and the awaitable the server awaits (it drives the app's coroutine and
    records a server error when the app raises before its response ended). The server's
    ``await`` reaches the app's coroutine through it directly: no coroutine of the router's
    own, no await wrapper, one allocation per request."""

    cdef object _send, _decision, _seq, _inner
    cdef void* _vectorcall  # _vectorcall for a Flight the middleware made (its send calls)
    cdef MiddlewareCore _core
    cdef bint _started
    cdef bint _c_start  # the start was read in C: _t0 (else the timer's reading: _start)
    cdef double _t0  # time.perf_counter() at the start, read in C
    cdef object _start  # what the injected timer returned at the start
    cdef public object status  # 0 until the response starts; -1 once recorded

    @property
    def start(self):
        """The timer's reading when the app was called (a float from the default timer)."""
        return self._t0 if self._c_start else self._start

    def __call__(self, message):
        return _message(self, message)

    # the awaitable: the coroutine protocol (registered as a collections.abc.Coroutine, so
    # asyncio.run and create_task take it as they take a coroutine)
    def __await__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, value):
        cdef PyObject* res = NULL
        cdef int r = _advance(self, value, &res)
        out = <object>res
        Py_XDECREF(res)
        if r == 1:
            return out
        raise StopIteration(out)

    def throw(self, typ, val=None, tb=None):
        it = self._inner
        if it is None:
            raise exception_of(typ, val, tb)
        self._started = True
        thrower = getattr(it, "throw", None)
        try:
            if thrower is None:
                raise exception_of(typ, val, tb)
            if val is None and tb is None:
                return thrower(typ)
            return thrower(typ, val, tb)
        except StopIteration:  # the app returned
            self._inner = None
            raise
        except BaseException as exc:
            _ended(self, exc)
            raise

    def close(self):
        """Close the app's coroutine; a request closed before its response ended is a
        server error, as the Python method's ``except BaseException`` records it."""
        it = self._inner
        if it is None:
            return
        self._inner = None
        closer = getattr(it, "close", None)
        try:
            if closer is not None:
                closer()
        except BaseException as exc:
            _ended(self, exc)
            raise
        _record_error(self)

    def __del__(self):
        # dropped while suspended without being closed: closed now, as a coroutine would be
        # (never started: nothing ran; the app's coroutine warns that it was never awaited)
        if self._inner is not None and self._started:
            self.close()


cdef object _message(Flight self, object message):
    """The ``send`` the app is given (:class:`Flight`'s ``__call__``, and its vectorcall)."""
    cdef MiddlewareCore core = self._core
    cdef double now
    cdef long long seq
    cdef Py_ssize_t pending
    cdef bint failed
    if core is None:  # made outside the middleware's call: nothing to record into
        raise TypeError("a Flight is made by the middleware's call only")
    kind = message["type"]
    if _is(kind, b"http.response.start", 19):
        self.status = message["status"]
        signer = core.signer
        if signer is not None:  # the signed token for late feedback (tokens.py)
            message = {**message, "headers": [*message.get("headers", ()), (
                _TOKEN, signer.sign_decision(self._decision))]}
    elif _is(kind, b"http.response.body", 18) and not (
            (<dict>message).get("more_body") if type(message) is dict
            else message.get("more_body")) and _at_least(self.status, 0):
        failed = _at_least(self.status, 500)
        error = _ONE if failed else _ZERO  # (the Python method's constants)
        entries = core.entries
        if entries is None:
            core.finish(self._seq, self.start, error)
        else:
            typed = core.typed
            if self._c_start and core.perf and perf_now(&now) == 0:
                now = (now - self._t0) * 1000.0  # the latency: the same float operations
                latency = None  # (a C double: no object made unless the list takes it)
            else:  # an injected timer: its own operations, whatever type it returns
                latency = (core.timer() - self.start) * 1000.0
                if type(latency) is float:
                    now = <double>latency
            if ((latency is None or type(latency) is float) and typed is not None
                    and _seq_of(self._seq, &seq)):  # a C record in the journal: no objects
                push_entry(typed, seq, now, 1.0 if failed else 0.0)
                pending = typed.n
            else:
                entries.append((self._seq, now if latency is None else latency, error))
                pending = PyList_GET_SIZE(entries) if type(entries) is list else len(entries)
            if pending >= core.threshold:
                core.fold_journal()
            route = core.route  # the experiment's C copy, when the route is compiled
            tick = core.experiment.tick if route is None else (<RouteCore>route).tick
            if tick is not None:
                tick()
        self.status = -1
    cdef PyObject* arg = <PyObject*>message
    return PyObject_Vectorcall(self._send, &arg, 1, NULL)  # the server's send(message)


cdef inline bint _seq_of(object obj, long long* out) except -1:
    """The decision number as a C integer when it is an exact int that fits (a route's
    always does); False otherwise (the entry then goes to the list, as an object)."""
    cdef int overflow = 0
    if type(obj) is not int:
        return False
    out[0] = PyLong_AsLongLongAndOverflow(obj, &overflow)
    return not overflow


cdef inline bint _is(object kind, const char* name, size_t n) except -1:
    """``kind == name`` for the ASCII ``name`` of ``n`` characters: a str's characters
    compared in C (any other object compared by Python)."""
    if type(kind) is str and PyUnicode_IS_COMPACT_ASCII(kind):
        return (<size_t>PyUnicode_GET_LENGTH(kind) == n
                and memcmp(PyUnicode_DATA(kind), name, n) == 0)
    return kind == name[:n].decode("ascii")


cdef object _vectorcall(object self, PyObject** args, size_t nargsf, PyObject* kwnames):
    """The Flight's vectorcall (set on each Flight the middleware makes): the app's
    ``send(message)`` without an argument tuple; any other form of call goes through
    ``__call__`` (its own TypeErrors)."""
    cdef Py_ssize_t n = PyVectorcall_NARGS(nargsf), i
    if kwnames == NULL and n == 1:
        return _message(<Flight>self, <object>args[0])
    pos = [<object>args[i] for i in range(n)]
    names = () if kwnames == NULL else <tuple>kwnames
    kwargs = {names[i]: <object>args[n + i] for i in range(len(names))}
    return Flight.__call__(self, *pos, **kwargs)


cdef int _set_vectorcall() except -1:
    """Give Flight instances a vectorcall slot (read from each one's ``_vectorcall`` field:
    NULL, and so ``__call__``, for one made outside the middleware's call)."""
    cdef Flight probe = Flight.__new__(Flight)
    return modelrouter_set_vectorcall(
        Flight, <char*>&probe._vectorcall - <char*><PyObject*>probe)


cdef inline bint _at_least(object status, long bound) except -1:
    """``status >= bound`` (the status the app sent: any object): an int compared in C."""
    cdef int overflow
    cdef long value
    if type(status) is int:
        value = PyLong_AsLongAndOverflow(status, &overflow)
        return overflow > 0 if overflow else value >= bound
    return status >= bound


cdef int _ended(Flight f, object exc) except -1:
    """The app's coroutine ended with ``exc``: a server error (once), unless the request was
    cancelled (the client went away: neither a latency nor a server error to record)."""
    f._inner = None
    if not isinstance(exc, CancelledError):
        _record_error(f)
    return 0


cdef int _record_error(Flight f) except -1:
    """A request that failed before its response ended: error 1.0 (once)."""
    if _at_least(f.status, 0):
        f.status = -1
        f._core.finish(f._seq, f.start, 1.0, tick=False)
    return 0


cdef int _advance(object o, object arg, PyObject** result) except -1:
    """One step of a :class:`Flight` (its am_send slot, and its ``send``): 1 when the app's
    coroutine yielded ``*result``, 0 when it returned ``*result``, -1 when it raised (a
    server error recorded, unless the request was cancelled)."""
    cdef Flight f = <Flight>o
    cdef int r
    result[0] = NULL  # (on an error of its own too: the interpreter asserts it in debug builds)
    it = f._inner
    if it is None:
        raise RuntimeError("cannot reuse already awaited coroutine")
    f._started = True
    try:
        r = PyIter_Send(it, arg, result)
    except BaseException as exc:
        _ended(f, exc)
        raise
    if r == 0:
        f._inner = None
    return r


modelrouter_set_am_send(Flight, <void*>_advance)
_set_vectorcall()
Coroutine.register(Flight)


def new_core(mw):
    """The middleware's :class:`MiddlewareCore` (built at the end of its ``__init__``)."""
    core = MiddlewareCore()
    core.refresh(mw)
    return core


cdef Flight _flight(MiddlewareCore core, object decision, object seq, object target,
                    object scope, object receive, object send):
    """The counted request's :class:`Flight`, the app called with it as ``send``."""
    cdef Flight f = Flight.__new__(Flight)
    cdef PyObject* args[3]
    f._core, f._decision, f._seq, f._send = core, decision, seq, send
    f._vectorcall = <void*>_vectorcall
    f.status = 0
    f._c_start = core.perf and perf_now(&f._t0) == 0  # time.perf_counter(), read in C
    if not f._c_start:
        f._start = core.timer()
    args[0], args[1], args[2] = <PyObject*>scope, <PyObject*>receive, <PyObject*>f
    try:
        f._inner = awaitable_of(PyObject_Vectorcall(target, args, 3, NULL), Flight)
    except BaseException as exc:
        _ended(f, exc)
        raise
    return f


cdef object _entry(object mw, object scope, object receive, object send):
    """The request path: what the server awaits for this request (see the module
    docstring). Everything before the app runs happens here, at the call."""
    cdef MiddlewareCore core
    cdef PyObject* seq_p = NULL
    d = instance_dict(mw)  # mw._core, read from the instance dict: no lookup in the class
    if d is not None:
        read_fields(&_mw, <dict>d, _MW)
        core = field_or_attr(_mw.values[0], mw, "_core")
    else:
        core = mw._core
    if core is None:  # (a C field of None would crash) the Python method's AttributeError
        raise AttributeError(f"{type(mw).__name__!r} object has no C copy of its attributes "
                             "(_core): its RoutingMiddleware.__init__ did not run")
    surface = core.surface
    if (surface is not None and scope["type"] == "http"
            and scope["path"].startswith(core.http_prefix)):
        return surface(scope, receive, send)  # never experiment traffic
    if scope["type"] != "http" or not (core.every_path or core.routed(scope["path"])):
        if scope["type"] == "lifespan":
            return run_lifespan(core.app, core.lifecycle, scope, receive, send)
        return core.app(scope, receive, send)
    segment = core.read_segment(scope) if core.read_segment is not None else ()
    try:
        if core.covariates is not None:
            decision, seq = core.covariates.route(scope, header_unit(core, scope), segment)
        elif core.route is not None and not core.route.overridden and route_is_twin(core):
            decision = core.route.route_into(header_unit(core, scope), segment, &seq_p)
            seq = <object>seq_p  # (the reference route_into gave is dropped below)
            Py_XDECREF(seq_p)
            seq_p = NULL
        else:
            decision, seq = core.experiment.route_checked(header_unit(core, scope), segment)
    except UnitIdError as exc:
        return send_error(send, 400, str(exc))
    if core.shadows is not None:  # shadow evaluation: routing/shadows.py
        decision = core.shadows.select(decision)
    replay = core.replay
    if replay is not None:  # ASGI-app shadows: record now, replay after the response
        recording = replay.record(decision, scope, receive, send)
        if recording is not None:
            return _replaying(core, decision, seq, scope, recording, replay)
    target = target_of(core, scope, decision)
    if not counted(decision):
        return target(scope, receive, send)
    return _flight(core, decision, seq, target, scope, receive, send)


async def _replaying(MiddlewareCore core, decision, seq, scope, recording, replay):
    """The rest of a request whose ASGI-app shadows were recorded (asgi/shadow_replay.py):
    served through the recording's receive and send, replayed after the response."""
    receive, send = recording.receive, recording.send
    target = target_of(core, scope, decision)
    if not counted(decision):
        await target(scope, receive, send)
        return
    try:
        await _flight(core, decision, seq, target, scope, receive, send)
    except CancelledError:  # nothing to replay: counted
        replay.log.skip("cancelled")
        raise
    except BaseException:  # served app failed (recorded by the flight): shadows run
        replay.start(recording, decision.decision_id, failed=True)
        raise
    replay.start(recording, decision.decision_id)  # response sent: replay it


async def call(mw, scope, receive, send):
    """``RoutingMiddleware.__call__`` (a coroutine function, as servers check: uvicorn,
    hypercorn and asgiref read ``app.__call__`` to tell ASGI 3 from ASGI 2). A call of the
    middleware itself skips this coroutine: :func:`install_call` points its class's call
    slot at the request path, which returns the app's awaitable or a :class:`Flight`."""
    await _entry(mw, scope, receive, send)


cdef object _tp_call(object mw, object args, PyObject* kwargs):
    """The call slot of a class :func:`install_call` was given: ``mw(scope, receive,
    send)``. Any other form of call goes through :func:`call` and its own TypeErrors."""
    if kwargs == NULL and len(<tuple>args) == 3:
        return _entry(mw, (<tuple>args)[0], (<tuple>args)[1], (<tuple>args)[2])
    return call(mw, *args, **(<object>kwargs if kwargs != NULL else {}))


def install_call(cls):
    """Make calls of ``cls``'s instances run the request path directly (its call slot),
    while ``cls.__call__`` is :func:`call`; True when installed. A class with a
    ``__call__`` of its own keeps it, and assigning ``__call__`` later resets the slot
    (CPython's own slot update), so a patched method is always the one that runs."""
    if not isinstance(cls, type) or getattr(cls, "__call__", None) is not call:
        return False
    modelrouter_set_tp_call(cls, <void*>_tp_call)
    return True
