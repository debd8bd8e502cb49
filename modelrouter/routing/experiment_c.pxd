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
