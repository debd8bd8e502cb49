# The C interface of store/decisions_c.pyx, for the memory store's compiled expose_decision
# (store/hot_c.pyx): ``tracker.open(...)`` as a C call where the tracker's method is the twin.
cdef object open_call(object tracker, object seq, object variant, object epoch, object segment,
                      object tag, object unit_row, object now)
