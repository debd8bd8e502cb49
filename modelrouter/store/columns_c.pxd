# The C interface of store/columns_c.pyx, for the compiled decision tracker (store/decisions_c.pyx).
from cpython.array cimport array


# PendingRing.remember (store/ring.py) in C, shared by the ring's compiled twin and the tracker's
# compiled open: the slot, or -1 having written nothing (the caller then runs the Python method).
cdef Py_ssize_t ring_remember(array seq_a, array time_a, array row_a, list columns,
                              long long cap, long long s, double now, long long r) except -2
