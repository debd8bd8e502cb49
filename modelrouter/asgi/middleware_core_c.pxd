"""C declarations of asgi/middleware_core_c.pyx, cimported by asgi/middleware_c.pyx."""

from modelrouter.routing.experiment_c cimport RouteCore
from modelrouter.store.columns_c cimport EntryBuffer


cdef class MiddlewareCore:
    cdef public object app, experiment, lifecycle, read_unit, read_segment, covariates
    cdef public object timer, fold_journal, routed, finish, entries
    cdef public EntryBuffer typed  # the journal's typed entries (store/journal.py), or None
    cdef public object surface, shadows, replay, signer  # written through by the middleware
    cdef public object fast_header
    cdef public Py_ssize_t max_length, threshold
    cdef public str http_prefix
    cdef public bint every_path
    cdef public bint perf  # timer is time.perf_counter: read in C (routing/clocks.pxd)
    cdef public dict target_of
    cdef public RouteCore route  # None: call experiment.route_checked
    cdef unsigned int route_tag  # the experiment type's version when ``route`` was checked


cdef object header_unit(MiddlewareCore core, object scope)
cdef object target_of(MiddlewareCore core, object scope, object decision)
cdef bint counted(object decision) except -1
cdef object awaitable_of(object obj, type own)
cdef object exception_of(object typ, object val, object tb)
cdef bint route_is_twin(MiddlewareCore core) except -1
