# The C interface of routing/experiment_c.pyx, for the compiled middleware twin.
from cpython.object cimport PyObject

from modelrouter.store.hot_c cimport UnitPath


cdef class RouteCore:
    cdef public object state, clock, bandit, store, expose, bucket, route_other
    cdef public UnitPath path
    cdef public object prefix, names, models  # any type the Python method takes
    cdef public bint unit_level, overridden
    cdef public bint wall  # clock is time.time: read in C (routing/clocks.pxd)
    cdef public object tick  # the experiment's feedback hook (Experiment.subscribe)
    cdef object _alloc, _props, _epoch  # the last allocation seen, its propensities, epoch
    cpdef tuple route(self, object unit, object segment=*)
    cdef object route_into(self, object unit, object segment, PyObject** seq_out)


# A counted Decision allocated as tuple.__new__ allocates it, and a decision id, ``prefix``
# and the hex digits of its number written in C (also used by the bandit's twin,
# routing/bandit_c.pyx).
cdef object decision_of(object decision_id, object variant, object model, object unit,
                        object propensity, object epoch, object mode, object issued_at,
                        object segment)
cdef str hex_id(str prefix, unsigned long long v)


# The pair ``(decision, seq)`` a Python route returns, split: the decision; ``seq`` (a new
# reference) in ``*seq_out`` (the unpacking's own errors). Also used by the bandit's twin.
cdef object split_decision(object pair, PyObject** seq_out)

# BanditRouter.route (routing/bandit_c.pyx) as a C call for the bandit mode's decisions: bandit_c
# cimports this module, so it registers its function here when it is imported (the router's
# method is called while none is registered). The function writes ``seq`` as ``route_into``
# does, checks that the router's method is still the compiled twin, and calls the method
# otherwise.
ctypedef object (*BanditRoute)(object router, object unit, object segment, object alloc,
                               PyObject** seq_out)
cdef void set_bandit_route(BanditRoute fn) noexcept
