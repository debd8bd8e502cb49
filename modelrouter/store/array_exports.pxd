# Whether an array.array exports buffers (a memoryview, numpy.frombuffer): the array's own
# append and extend refuse to move its memory then (BufferError); a resize from C must not
# either, or the view reads and writes freed memory. And the typed appends of the compiled
# store (store/hot_c.pyx) that respect it. Header-only (no module of its own).
from cpython.array cimport array, resize_smart


cdef extern from *:
    """
    #define modelrouter_array_exports(a) (((arrayobject*)(a))->ob_exports)
    """
    int array_exports "modelrouter_array_exports" (array a)


cdef inline void append_double(array a, double v):
    """``a.append(v)`` on an ``array('d')``, in C unless a buffer is exported."""
    cdef Py_ssize_t n = len(a)
    if array_exports(a):  # a buffer is exported: the array's own append (its BufferError)
        a.append(v)
        return
    resize_smart(a, n + 1)
    a.data.as_doubles[n] = v


cdef inline void append_longlong(array a, long long v):
    """``a.append(v)`` on an ``array('q')``, in C unless a buffer is exported."""
    cdef Py_ssize_t n = len(a)
    if array_exports(a):
        a.append(v)
        return
    resize_smart(a, n + 1)
    a.data.as_longlongs[n] = v


cdef inline object append_small(array a, object v, long low, long high, int kind):
    """``a.append(v)`` for the integer columns: in C when ``v`` is an int in the column's range,
    else by the array itself (its own OverflowError or TypeError)."""
    cdef long x
    cdef Py_ssize_t n
    if type(v) is not int:
        a.append(v)
        return None
    x = v
    if x < low or x > high or array_exports(a):
        a.append(v)
        return None
    n = len(a)
    resize_smart(a, n + 1)
    if kind == 0:
        a.data.as_schars[n] = <signed char>x
    elif kind == 1:
        a.data.as_ints[n] = <int>x
    elif kind == 2:
        a.data.as_uints[n] = <unsigned int>x
    else:
        a.data.as_ushorts[n] = <unsigned short>x
    return None
