"""The pure parts of benchmarks/perf_server.py: reading ``perf report`` text (self time by
shared object and function, the router's inclusive time) into microseconds per request.
The report lines are copied from a real run on the issue-17 machine (call-graph lines and
headers included, which must be skipped); every expected value is worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from perf_server import router_inclusive, self_times, top  # noqa: E402 - not a package

SELF = """# Samples: 39K of event 'cpu-clock'
#
# Overhead  Shared Object        Symbol
# ........  ...................  ..............................
#
    25.60%  libpython3.11.so.1.0                               [.] _PyEval_EvalFrameDefault
            |
            ---_PyEval_EvalFrameDefault
               |--7.65%--0x7ff688d60c80
    12.50%  [kernel.kallsyms]                                  [k] _raw_spin_unlock_irqrestore
     2.50%  libpython3.11.so.1.0                               [.] unicodekeys_lookup_unicode
     0.40%  hot_c.cpython-311-x86_64-linux-gnu.so  [.] __pyx_f_11modelrouter_5store_5hot_c_expose
"""

CHILDREN = """# Children      Self  Symbol
    63.51%     0.04%  [.] __pyx_f_11modelrouter_4asgi_12middleware_c__advance
    13.05%     0.00%  [.] __pyx_pw_9httptools_6parser_6parser_10HttpParser_13feed_data
     5.00%     0.08%  [.] __pyx_f_11modelrouter_4asgi_12middleware_c__entry
     1.33%     0.00%  [.] __pyx_pf_11modelrouter_5store_5hot_c_2add_unit (inlined)
     0.25%     0.25%  [.] mr_blake2b_compress
"""


def test_self_time_by_shared_object_and_function_in_us_per_request() -> None:
    by_dso, by_sym = self_times(SELF, 80.0)  # 80 us of CPU per request
    assert by_dso == pytest.approx({"libpython3.11.so.1.0": 22.48, "[kernel.kallsyms]": 10.0,
                                    "hot_c.cpython-311-x86_64-linux-gnu.so": 0.32})
    assert by_sym[("libpython3.11.so.1.0", "_PyEval_EvalFrameDefault")] == pytest.approx(20.48)
    assert by_sym[("[kernel.kallsyms]", "_raw_spin_unlock_irqrestore")] == pytest.approx(10.0)
    assert len(by_sym) == 4  # call-graph and header lines are not functions
    assert [name for name, _ in top(by_sym, 2)] == [
        "_PyEval_EvalFrameDefault (libpython3.11.so.1.0)",
        "_raw_spin_unlock_irqrestore ([kernel.kallsyms])"]


def test_router_inclusive_time_keeps_the_routers_functions_only() -> None:
    got = router_inclusive(CHILDREN, 80.0)
    # httptools' Cython functions and inlined copies (counted in their caller) are left out
    assert got == pytest.approx({
        "__pyx_f_11modelrouter_4asgi_12middleware_c__advance": 50.808,
        "__pyx_f_11modelrouter_4asgi_12middleware_c__entry": 4.0,
        "mr_blake2b_compress": 0.2})
