# Whether an array.array exports buffers (a memoryview, numpy.frombuffer): the array's own
# append and extend refuse to move its memory then (BufferError); a resize from C must not
# either, or the view reads and writes freed memory. Header-only (no module of its own).
from cpython.array cimport array


cdef extern from *:
    """
    #define modelrouter_array_exports(a) (((arrayobject*)(a))->ob_exports)
    """
    int array_exports "modelrouter_array_exports" (array a)
