# Header only (no module): an object's ``__slots__`` attributes read at their offsets, for the
# compiled twins that call a method of a slotted Python class from C (store/hot_c.pyx:
# ``UnitTable.add``; routing/assignment_c.pyx: ``Bucketer.__call__``). A generic attribute read
# from C costs ~100-220 instructions (the type's lookup, the member descriptor's call) and a
# method call from C ~400 more (its lookup, its bound call, argument parsing); a slot read at
# its offset is one load.
#
# ``Slots`` caches, for one type, the offsets of some of its slots, found by the type's own
# lookup (so a slot shadowed by a subclass's property or replaced on the class is not read at
# the old offset) and valid while the type's version tag (a new, globally unique number after
# every change of the type or of a base: CPython's attribute cache uses it the same way) is
# the one seen when it was filled, and while the method looked up is still the compiled one.
# A type with a ``__dict__`` per instance, or its own ``__getattribute__``, is never cached:
# an instance could hold its own method, or reads could run Python code.
from cpython.object cimport PyObject, PyTypeObject

cdef extern from "Python.h":
    PyObject* _PyType_Lookup(PyTypeObject* tp, object name)

cdef extern from *:
    """
    #include <structmember.h>
    /* the offset of a plain object slot (``T_OBJECT_EX``: unset reads raise AttributeError),
       from the descriptor the type's lookup found; -1 for anything else */
    static Py_ssize_t modelrouter_slot_offset(PyObject* desc) {
        PyMemberDef* m;
        if (desc == NULL || Py_TYPE(desc) != &PyMemberDescr_Type) return -1;
        m = ((PyMemberDescrObject*)desc)->d_member;
        if (m->type != T_OBJECT_EX || m->offset <= 0) return -1;
        return m->offset;
    }
    /* the type's version tag in *tag, when it has a valid one */
    static int modelrouter_type_tag(PyTypeObject* tp, unsigned int* tag) {
        if (!PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG)) return 0;
        *tag = tp->tp_version_tag;
        return 1;
    }
    /* whether instances of tp have no __dict__ and read attributes generically */
    static int modelrouter_plain_slotted(PyTypeObject* tp) {
        return tp->tp_dictoffset == 0 && tp->tp_getattro == PyObject_GenericGetAttr;
    }
    /* the slot at byte offset off of obj (borrowed; NULL when unset) */
    #define modelrouter_slot(obj, off) (*(PyObject**)((char*)(obj) + (off)))
    """
    Py_ssize_t slot_offset "modelrouter_slot_offset" (PyObject* desc)
    bint type_tag "modelrouter_type_tag" (PyTypeObject* tp, unsigned int* tag)
    bint plain_slotted "modelrouter_plain_slotted" (PyTypeObject* tp)
    PyObject* slot_at "modelrouter_slot" (object obj, Py_ssize_t off)


ctypedef struct Slots:
    PyTypeObject* tp  # the type the offsets are of (NULL: none)
    unsigned int tag  # its version tag then
    Py_ssize_t offset[10]


cdef inline bint slots_of(Slots* s, object obj, object method, object impl,
                          tuple names) noexcept:
    """Whether ``s`` holds the offsets of ``names`` (at most 10, all str) for ``type(obj)``,
    filling it if needed: True when the type, unchanged, is plainly slotted, its ``method`` is
    ``impl`` and each name is a plain object slot; else False (call the method)."""
    cdef PyTypeObject* tp = <PyTypeObject*>(<PyObject*>obj).ob_type
    cdef unsigned int tag
    cdef Py_ssize_t i, off
    if tp == s.tp and type_tag(tp, &tag) and tag == s.tag:
        return True
    s.tp = NULL
    if (len(names) > 10 or not plain_slotted(tp)
            or _PyType_Lookup(tp, method) != <PyObject*>impl):
        return False
    for i in range(len(names)):
        off = slot_offset(_PyType_Lookup(tp, names[i]))
        if off < 0:
            return False
        s.offset[i] = off
    if not type_tag(tp, &tag):  # (the lookups above assign one when the type can have one)
        return False
    s.tp, s.tag = tp, tag
    return True
