# The C interface of store/record_c.pyx, for the compiled feedback twin (routing/feedback_c.pyx).

cdef object record_seq_c(object store, dict d, object seq, object metric, object value,
                         object window)
cdef object record_seq_call(object store, dict d, object seq, object metric, object value)
