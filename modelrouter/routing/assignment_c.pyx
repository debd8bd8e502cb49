# cython: language_level=3, boundscheck=False, wraparound=False, binding=True
"""Compiled twin of :meth:`Bucketer.__call__ <modelrouter.routing.assignment.Bucketer.__call__>`.

The same hash (``routing/assignment.py`` installs :func:`call` when it was built;
``config/extensions.py``): BLAKE2b with an 8-byte digest (RFC 7693, unkeyed) of the salt's
prefix (``utf8(salt) || 0x00``) and the unit id's UTF-8 bytes, the digest read big-endian and
divided by 2**64. The Python method runs hashlib's BLAKE2b on a copied hash object, which
allocates the copy, the encoded id and the digest on every first exposure; here the digest is
computed on the stack from the id's characters: an ASCII ``str`` holds its UTF-8 bytes
already. The digest's conversion to a double rounds to nearest, as Python's
``int / float`` does, and the division by a power of two is exact: the same float. Anything
but an exact ASCII ``str`` (a non-ASCII id, whose UTF-8 bytes CPython would otherwise cache in
the stored ``str`` for its lifetime; a subclass; bytes; a lone surrogate), and a Bucketer
without its prefix, takes the Python method's steps, so errors are the Python ones.

``bucket_of`` is the same hash for the compiled exposure (store/hot_c.pyx, from the compiled
route), called from C: no call through ``type(bucket).__call__``, no float object.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

from modelrouter.store.slot_fields cimport Slots, slot_at, slots_of

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object unicode)
    void* PyUnicode_DATA(object unicode)
    Py_ssize_t PyUnicode_GET_LENGTH(object unicode)

cdef extern from *:
    """
    /* RFC 7693's compression function F, as its reference code writes it: the rounds
       unrolled with constant indices, so the compiler keeps the working vector in registers */
    static const uint64_t MR_IV[8] = {
        0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
        0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
        0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
    static const unsigned char MR_SIGMA[12][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
        {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
        {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
        {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
        {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};
    #define MR_ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
    #define MR_G(r, i, a, b, c, d) do { \
        a = a + b + m[MR_SIGMA[r][2 * i]]; d = MR_ROTR64(d ^ a, 32); \
        c = c + d; b = MR_ROTR64(b ^ c, 24); \
        a = a + b + m[MR_SIGMA[r][2 * i + 1]]; d = MR_ROTR64(d ^ a, 16); \
        c = c + d; b = MR_ROTR64(b ^ c, 63); } while (0)
    #define MR_ROUND(r) do { \
        MR_G(r, 0, v[0], v[4], v[8], v[12]); MR_G(r, 1, v[1], v[5], v[9], v[13]); \
        MR_G(r, 2, v[2], v[6], v[10], v[14]); MR_G(r, 3, v[3], v[7], v[11], v[15]); \
        MR_G(r, 4, v[0], v[5], v[10], v[15]); MR_G(r, 5, v[1], v[6], v[11], v[12]); \
        MR_G(r, 6, v[2], v[7], v[8], v[13]); MR_G(r, 7, v[3], v[4], v[9], v[14]); } while (0)
    static void mr_blake2b_compress(uint64_t h[8], const unsigned char *block, uint64_t t,
                                    int last) {
        uint64_t m[16], v[16];
        int i;
        for (i = 0; i < 16; i++) {  /* little-endian words, byte by byte: any alignment */
            const unsigned char *p = block + 8 * i;
            m[i] = (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16)
                | ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40)
                | ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
        }
        for (i = 0; i < 8; i++) { v[i] = h[i]; v[i + 8] = MR_IV[i]; }
        v[12] ^= t;  /* the counter's high word: an id is far shorter than 2**64 bytes */
        if (last) v[14] = ~v[14];
        MR_ROUND(0); MR_ROUND(1); MR_ROUND(2); MR_ROUND(3); MR_ROUND(4); MR_ROUND(5);
        MR_ROUND(6); MR_ROUND(7); MR_ROUND(8); MR_ROUND(9); MR_ROUND(10); MR_ROUND(11);
        for (i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }
    """
    const uint64_t* MR_IV
    void mr_blake2b_compress(uint64_t* h, const unsigned char* block, uint64_t t,
                             int last) noexcept nogil


cdef uint64_t _digest8(const unsigned char* a, Py_ssize_t na, const unsigned char* b,
                       Py_ssize_t nb) noexcept nogil:
    """BLAKE2b-64 of ``a || b``, its 8 digest bytes read big-endian."""
    cdef uint64_t[8] h
    cdef unsigned char[128] buf
    cdef Py_ssize_t fill = 0, take, total = 0
    cdef const unsigned char* src
    cdef Py_ssize_t n
    cdef int part, i
    cdef uint64_t x, out = 0
    for i in range(8):
        h[i] = MR_IV[i]
    h[0] ^= 0x01010000ULL ^ 8ULL  # depth 1, fanout 1, no key, 8-byte digest
    for part in range(2):
        src, n = (a, na) if part == 0 else (b, nb)
        while n > 0:
            if fill == 128:  # a full block with more to come: not the last one
                total += 128
                mr_blake2b_compress(h, buf, <uint64_t>total, 0)
                fill = 0
            take = 128 - fill if n > 128 - fill else n
            memcpy(buf + fill, src, take)
            fill += take
            src += take
            n -= take
    total += fill
    memset(buf + fill, 0, 128 - fill)
    mr_blake2b_compress(h, buf, <uint64_t>total, 1)
    x = h[0]
    for i in range(8):  # digest bytes are h[0] little-endian; read them big-endian
        out = (out << 8) | (x & 0xFF)
        x >>= 8
    return out


def call(self, unit):
    """The unit's position in ``[0, 1)`` for this salt."""
    cdef object prefix
    if type(unit) is str and PyUnicode_IS_ASCII(unit):
        try:
            prefix = self._prefix
        except AttributeError:  # __init__ never ran: the Python method's own error
            return _call_py(self, unit)
        if type(prefix) is bytes:
            return _position(prefix, unit)
    return _call_py(self, unit)


cdef inline double _position(bytes prefix, str unit) noexcept:
    """The hash of ``prefix`` and an ASCII ``unit`` as a position in ``[0, 1)`` (exact: the
    division by a power of two)."""
    return <double>_digest8(<const unsigned char*>PyBytes_AS_STRING(prefix),
                            PyBytes_GET_SIZE(prefix), <const unsigned char*>PyUnicode_DATA(unit),
                            PyUnicode_GET_LENGTH(unit)) / 18446744073709551616.0


# Bucketer's prefix slot, at its offset (slot_fields.pxd)
cdef Slots _bucketer
cdef tuple _BUCKETER = ("_prefix",)


cdef double bucket_of(object bucket, object unit) except? -1.0:
    """``bucket(unit)`` for the compiled exposure (store/hot_c.pyx): :func:`call`'s hash
    without the call and the float object, where ``bucket`` is a plain ``Bucketer`` whose
    ``__call__`` is :func:`call`, its prefix bytes and ``unit`` an exact ASCII ``str``; anything
    else is the call itself (its result as a float, its errors)."""
    cdef PyObject* prefix
    if (type(unit) is str and PyUnicode_IS_ASCII(unit)
            and slots_of(&_bucketer, bucket, "__call__", call, _BUCKETER)):
        prefix = slot_at(bucket, _bucketer.offset[0])
        if prefix != NULL and type(<object>prefix) is bytes:
            return _position(<bytes>prefix, <str>unit)
    return bucket(unit)


cdef object _call_py(object self, object unit):
    """The Python method's steps (hashlib), for what :func:`call` does not hash itself."""
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
