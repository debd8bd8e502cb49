# time.perf_counter() and time.time() read in C, as CPython computes them on Linux: the clock
# in integer nanoseconds (clock_gettime, CLOCK_MONOTONIC and CLOCK_REALTIME), then
# _PyTime_AsSecondsDouble's rounding; the request path avoids a call through the interpreter
# for each. 0 on success; -1 where that is not the clock CPython reads (not Linux, or the
# clock failed): the caller then calls the Python timer. Header-only (no module of its own).

cdef extern from *:
    """
    #include <time.h>
    static int modelrouter_clock_now(int wall, double *out) {
    #if defined(__linux__) && defined(CLOCK_MONOTONIC) && defined(CLOCK_REALTIME)
        struct timespec ts;
        long long t;
        volatile double d;  /* as CPython: no optimisation changes the rounding */
        if (clock_gettime(wall ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts) != 0)
            return -1;
        t = (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
        if (t % 1000000000LL == 0) {
            d = (double)(t / 1000000000LL);
        } else {
            d = (double)t;
            d /= 1e9;
        }
        *out = d;
        return 0;
    #else
        (void)wall;
        (void)out;
        return -1;
    #endif
    }
    #define modelrouter_perf_now(out) modelrouter_clock_now(0, (out))
    #define modelrouter_wall_now(out) modelrouter_clock_now(1, (out))
    """
    int perf_now "modelrouter_perf_now" (double* out) noexcept nogil
    int wall_now "modelrouter_wall_now" (double* out) noexcept nogil
