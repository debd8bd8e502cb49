"""Build the optional compiled twins of the request path (see modelrouter/config/extensions.py).

Everything else is in pyproject.toml. Each extension is ``optional``: without a C compiler the
build goes on and the Python methods run. ``MODELROUTER_NO_EXTENSIONS=1`` at build time skips
them too.
"""

import os

from setuptools import Extension, setup

SOURCES = {
    "modelrouter.asgi.middleware_c": "modelrouter/asgi/middleware_c.pyx",
    "modelrouter.asgi.middleware_core_c": "modelrouter/asgi/middleware_core_c.pyx",
    "modelrouter.routing.assignment_c": "modelrouter/routing/assignment_c.pyx",
    "modelrouter.routing.bandit_c": "modelrouter/routing/bandit_c.pyx",
    "modelrouter.routing.experiment_c": "modelrouter/routing/experiment_c.pyx",
    "modelrouter.routing.feedback_c": "modelrouter/routing/feedback_c.pyx",
    "modelrouter.store.columns_c": "modelrouter/store/columns_c.pyx",
    "modelrouter.store.decisions_c": "modelrouter/store/decisions_c.pyx",
    "modelrouter.store.hot_c": "modelrouter/store/hot_c.pyx",
    "modelrouter.store.record_c": "modelrouter/store/record_c.pyx",
}


def extensions() -> list[Extension]:
    if os.environ.get("MODELROUTER_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # pragma: no cover - Cython is a build requirement
        return []
    built = []
    for name, src in SOURCES.items():
        try:  # one source that does not translate leaves only its own twin unbuilt
            # -ffp-contract=off: no fused multiply-add, so the twins' float arithmetic rounds
            # exactly as the Python methods' does
            built += cythonize([Extension(name, [src], optional=True,
                                          extra_compile_args=["-ffp-contract=off"])],
                               compiler_directives={"language_level": "3"}, quiet=True)
        except Exception as exc:  # noqa: BLE001 - the Python twin runs instead
            print(f"modelrouter: {src} not compiled ({exc}); its Python twin runs")
    return built


setup(ext_modules=extensions())
