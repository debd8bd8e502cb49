# The C interface of routing/assignment_c.pyx, for the compiled exposure
# (store/hot_c.pyx's ``expose``, called from routing/experiment_c.pyx).

# ``bucket(unit)`` as a float, by the compiled hash where ``bucket`` is a plain Bucketer
cdef double bucket_of(object bucket, object unit) except? -1.0
