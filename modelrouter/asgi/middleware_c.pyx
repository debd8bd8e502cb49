# cython: language_level=3, boundscheck=False, wraparound=False, binding=True
"""Compiled twin of :meth:`RoutingMiddleware.__call__ <modelrouter.asgi.middleware.RoutingMiddleware.__call__>`.

The same steps in the same order on the same middleware object (``asgi/middleware.py`` installs
:func:`call` as ``RoutingMiddleware.__call__`` when it was built; ``config/extensions.py``):
pass-through of what is not experiment traffic, the unit id, the decision, the request's state,
the app, and the automatic metrics when the last body byte is sent. Two parts are C of their
own: the unit id of a header whose value is printable ASCII within the bound is read from the
header's bytes (any other value, or any other source, goes to the middleware's ``UnitReader``,
which refuses or accepts it exactly as the Python method does), and the ``send`` wrapper is a
small C type (:class:`SendWrapper`) instead of a closure. What the method reads from the
middleware it reads from a :class:`MiddlewareCore` (C fields) that the middleware builds once
and refreshes whenever one of its attributes is set (``RoutingMiddleware.__setattr__``).
"""

from asyncio import CancelledError

from cpython.object cimport Py_TYPE


cdef extern from "Python.h":
    ctypedef struct _Typed "PyTypeObject":  # the one field read here
        unsigned int tp_version_tag

from modelrouter.asgi.lifespan import run_lifespan
from modelrouter.asgi.responses import send_error
from modelrouter.exceptions import UnitIdError
from modelrouter.routing.decision import Decision
from modelrouter.routing.tokens import TOKEN_HEADER

from modelrouter.routing.experiment_c cimport RouteCore

from modelrouter.routing.experiment_c import route_checked as _route_checked_twin

cdef bytes _TOKEN = TOKEN_HEADER.encode("latin-1")


cdef object _header_unit(MiddlewareCore core, object scope):
    """The unit id of the request: from the header's bytes when they are printable ASCII
    (no space at either end) within the bound, else whatever the ``UnitReader`` says."""
    cdef bytes name = core.fast_header
    cdef const unsigned char* p
    cdef Py_ssize_t n, j
    reader = core.read_unit
    if name is None:
        return reader(scope)
    headers = scope["headers"]
    if type(headers) is not list and type(headers) is not tuple:
        # any other iterable may be one-shot (a generator): the reader's single pass reads it
        return reader(scope)
    for item in headers:
        key, raw = item
        if key == name:
            if type(raw) is not bytes:
                return reader(scope)
            n = len(<bytes>raw)
            if n == 0 or n > core.max_length:
                return reader(scope)
            p = <const unsigned char*><bytes>raw
            if p[0] == 0x20 or p[n - 1] == 0x20:
                return reader(scope)
            for j in range(n):
                if p[j] < 0x20 or p[j] > 0x7e:
                    return reader(scope)
            return (<bytes>raw).decode("ascii")
    return reader(scope)


cdef class MiddlewareCore:
    """What the request path reads from a ``RoutingMiddleware``, as C fields."""

    cdef public object app, experiment, lifecycle, read_unit, read_segment, covariates
    cdef public object timer, fold_journal, routed, finish, entries
    cdef public object surface, shadows, replay, signer  # written through by the middleware
    cdef public object fast_header
    cdef public Py_ssize_t max_length, threshold
    cdef public str http_prefix
    cdef public bint every_path
    cdef public dict target_of
    cdef public RouteCore route  # None: call experiment.route_checked
    cdef unsigned int route_tag  # the experiment type's version when ``route`` was checked

    def refresh(self, mw):
        """Read every field from the middleware again (it calls this when an attribute of
        its changes: the router sets surface, shadows and replay after building it)."""
        d = mw.__dict__
        experiment = d.get("experiment")
        self.app, self.experiment, self.lifecycle = d.get("app"), experiment, d.get("lifecycle")
        reader = self.read_unit = d.get("_read_unit")
        self.fast_header = getattr(reader, "fast_header", None)
        self.max_length = getattr(reader, "max_length", 0)
        self.read_segment, self.covariates = d.get("_read_segment"), d.get("_covariates")
        self.timer, self.entries = d.get("_timer"), d.get("_entries")
        self.threshold = d.get("_threshold") or 0
        self.fold_journal = d.get("_fold_journal")
        self.routed, self.finish = mw._routed, mw._finish
        self.http_prefix, self.every_path = d.get("_http_prefix"), d.get("_every_path", False)
        self.target_of = d.get("_target_of")
        self.surface, self.shadows = d.get("surface"), d.get("shadows")
        self.replay, self.signer = d.get("replay"), d.get("_signer")
        core = getattr(experiment, "_core", None)
        # the route as a C call only while route_checked is the compiled twin's
        own = getattr(type(experiment), "route_checked", None) is _route_checked_twin
        self.route = core if own and isinstance(core, RouteCore) else None
        self.route_tag = 0


cdef inline bint _route_is_twin(MiddlewareCore core):
    """Whether the experiment's class still has the compiled ``route_checked`` (a test may
    patch the class after construction): read again whenever the class changed, which
    changes its version tag (0: not yet tagged; then read every time)."""
    experiment = core.experiment
    cdef _Typed* t = <_Typed*>Py_TYPE(experiment)
    cdef unsigned int tag = t.tp_version_tag
    if tag != 0 and tag == core.route_tag:
        return True
    if type(experiment).route_checked is not _route_checked_twin:
        return False
    core.route_tag = t.tp_version_tag  # (the lookup just tagged it)
    return True


cdef class SendWrapper:
    """The ``send`` the app is given for a counted request: records the automatic metrics
    when the last body byte is sent, and adds the signed token to the response headers."""

    cdef object _send, _decision, _seq
    cdef MiddlewareCore _core
    cdef public object start
    cdef public object status  # 0 until the response starts; -1 once recorded

    def __call__(self, message):
        cdef MiddlewareCore core = self._core
        if core is None:  # made outside the middleware's call: nothing to record into
            raise TypeError("a SendWrapper is made by the middleware's call only")
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            signer = core.signer
            if signer is not None:  # the signed token for late feedback (tokens.py)
                message = {**message, "headers": [*message.get("headers", ()), (
                    _TOKEN, signer.sign_decision(self._decision))]}
        elif kind == "http.response.body" and not (
                (<dict>message).get("more_body") if type(message) is dict
                else message.get("more_body")) and self.status >= 0:
            error = 1.0 if self.status >= 500 else 0.0
            entries = core.entries
            if entries is None:
                core.finish(self._seq, self.start, error)
            else:
                entries.append((self._seq, (core.timer() - self.start) * 1000.0, error))
                if len(entries) >= core.threshold:
                    core.fold_journal()
                tick = core.experiment.tick
                if tick is not None:
                    tick()
            self.status = -1
        return self._send(message)


cdef SendWrapper _wrapper(MiddlewareCore core, object decision, object seq, object send):
    cdef SendWrapper w = SendWrapper.__new__(SendWrapper)
    w._core, w._decision, w._seq, w._send = core, decision, seq, send
    w.status = 0
    w.start = core.timer()
    return w


def new_core(mw):
    """The middleware's :class:`MiddlewareCore` (built at the end of its ``__init__``)."""
    core = MiddlewareCore()
    core.refresh(mw)
    return core


async def call(mw, scope, receive, send):
    """The request path of :class:`~modelrouter.ModelRouter` (see the module docstring)."""
    cdef MiddlewareCore core = mw._core
    cdef SendWrapper wrapper
    if core is None:  # (a C field of None would crash) the Python method's AttributeError
        raise AttributeError(f"{type(mw).__name__!r} object has no C copy of its attributes "
                             "(_core): its RoutingMiddleware.__init__ did not run")
    surface = core.surface
    if (surface is not None and scope["type"] == "http"
            and scope["path"].startswith(core.http_prefix)):
        await surface(scope, receive, send)  # never experiment traffic
        return
    if scope["type"] != "http" or not (core.every_path or core.routed(scope["path"])):
        if scope["type"] == "lifespan":
            await run_lifespan(core.app, core.lifecycle, scope, receive, send)
            return
        await core.app(scope, receive, send)
        return
    segment = core.read_segment(scope) if core.read_segment is not None else ()
    try:
        if core.covariates is not None:
            decision, seq = core.covariates.route(scope, _header_unit(core, scope), segment)
        elif core.route is not None and not core.route.overridden and _route_is_twin(core):
            decision, seq = core.route.route(_header_unit(core, scope), segment)
        else:
            decision, seq = core.experiment.route_checked(_header_unit(core, scope), segment)
    except UnitIdError as exc:
        await send_error(send, 400, str(exc))
        return
    if core.shadows is not None:  # shadow evaluation: routing/shadows.py
        decision = core.shadows.select(decision)
    recording = None
    replay = core.replay
    if replay is not None:  # ASGI-app shadows: record now, replay after the response
        recording = replay.record(decision, scope, receive, send)
        if recording is not None:
            receive, send = recording.receive, recording.send
    state = scope.get("state")
    if not state:  # uvicorn's per-request copy of an empty lifespan state: the common case
        scope["state"] = {"modelrouter": decision}
    elif type(state) is dict:
        state = state.copy()  # never the server's dict: a request's state is its own
        state["modelrouter"] = decision
        scope["state"] = state
    else:
        scope["state"] = {**state, "modelrouter": decision}
    if type(decision) is Decision:
        variant, counted = (<tuple>decision)[1], (<tuple>decision)[8]
    else:
        variant, counted = decision.variant, decision.counted
    target = core.target_of[variant]
    if not counted:
        await target(scope, receive, send)
        return
    wrapper = _wrapper(core, decision, seq, send)
    try:
        await target(scope, receive, wrapper)
    except CancelledError:
        if recording is not None and replay is not None:  # nothing to replay: counted
            replay.log.skip("cancelled")
        raise  # the client went away: neither a latency nor a server error to record
    except BaseException:
        if wrapper.status >= 0:
            wrapper.status = -1
            core.finish(seq, wrapper.start, 1.0, tick=False)
        if recording is not None and replay is not None:  # served app failed: shadows run
            replay.start(recording, decision.decision_id, failed=True)
        raise
    if recording is not None and replay is not None:  # response sent: replay it
        replay.start(recording, decision.decision_id)
