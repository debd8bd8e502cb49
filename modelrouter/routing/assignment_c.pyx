# cython: language_level=3, boundscheck=False, wraparound=False, binding=True
"""Compiled twin of :meth:`Bucketer.__call__ <modelrouter.routing.assignment.Bucketer.__call__>`.

The same hash (``routing/assignment.py`` installs :func:`call` when it was built;
``config/extensions.py``): BLAKE2b of the salt's prepared state and the unit id's UTF-8
bytes, the 8-byte digest read big-endian and divided by 2**64. The digest's conversion to a
double rounds to nearest, as Python's ``int / float`` does, and the division by a power of two
is exact: the same float.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE


def call(self, unit):
    """The unit's position in ``[0, 1)`` for this salt."""
    cdef bytes digest
    cdef const unsigned char* p
    cdef unsigned long long x = 0
    cdef int j
    h = self._base.copy()
    h.update(unit.encode("utf-8"))
    digest = h.digest()
    if PyBytes_GET_SIZE(digest) != 8:  # not the 8-byte digest of the spec: the Python path
        return int.from_bytes(digest, "big") / 18446744073709551616.0
    p = <const unsigned char*>PyBytes_AS_STRING(digest)
    for j in range(8):
        x = (x << 8) | p[j]
    return <double>x / 18446744073709551616.0
