"""Build the optional compiled twins of the request path (see modelrouter/config/extensions.py).

Everything else is in pyproject.toml. Each extension is ``optional``: without a C compiler the
build goes on and the Python methods run. ``MODELROUTER_NO_EXTENSIONS=1`` at build time skips
them too.

The compiled request path is laid out by a profile of what a service runs (``pgo/``, written by
``python scripts/pgo_profile.py``): with GCC, the blocks a request never runs go to a cold
section and the hot ones lie straight, so a request touches fewer instruction-cache lines. It
is used only when the compiler is the GCC that wrote it, Cython the same version, and the
sources those it was made from (``pgo/profile.json``); otherwise the build is the plain one and
says why. ``MODELROUTER_PGO=off`` skips it; ``=generate`` builds instrumented (the script's).
"""

import hashlib
import json
import os
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
PROFILE = HERE / "pgo"

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


def extensions(names: list[str] | None = None) -> list[Extension]:
    """The compiled twins to build (``names``: only these; tests/test_build_profile.py)."""
    if os.environ.get("MODELROUTER_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # pragma: no cover - Cython is a build requirement
        return []
    built = []
    for name, src in SOURCES.items():
        if names is not None and name not in names:
            continue
        try:  # one source that does not translate leaves only its own twin unbuilt
            # -ffp-contract=off: no fused multiply-add, so the twins' float arithmetic rounds
            # exactly as the Python methods' does
            # depends: a new profile rebuilds the module, as a changed source does
            profile = [str(p) for p in [PROFILE / f"{name}.gcda"] if p.is_file()]
            built += cythonize([Extension(name, [src], optional=True, depends=profile,
                                          extra_compile_args=["-ffp-contract=off"])],
                               compiler_directives={"language_level": "3"}, quiet=True)
        except Exception as exc:  # noqa: BLE001 - the Python twin runs instead
            print(f"modelrouter: {src} not compiled ({exc}); its Python twin runs")
    return built


def source_digest() -> str:
    """sha256 over every ``.pyx``/``.pxd`` under ``modelrouter/`` (path and content), as
    scripts/pgo_profile.py records it."""
    h = hashlib.sha256()
    for path in sorted((HERE / "modelrouter").rglob("*.px[dy]")):
        h.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cython_version() -> str | None:
    """The installed Cython's version (None without Cython)."""
    try:
        return version("Cython")
    except PackageNotFoundError:
        return None


def default_compiler() -> str:
    """The C compiler this Python's build uses (``sysconfig``'s ``CC``, its first word)."""
    import sysconfig

    return str(sysconfig.get_config_var("CC") or "gcc").split()[0]


def gcc_version(cc: str) -> str | None:
    """The full version of ``cc`` when it is GCC (clang answers ``-dumpfullversion`` too, but
    does not read GCC's profiles); None otherwise."""
    try:
        banner = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        dumped = subprocess.run([cc, "-dumpfullversion"], capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if "Free Software Foundation" not in banner.stdout or dumped.returncode != 0:
        return None
    return dumped.stdout.strip()


USE_PROFILE = ["-fprofile-use", "-fprofile-partial-training", "-Wno-missing-profile",
               "-Wno-error=coverage-mismatch"]


class BuildExt(build_ext):
    """``build_ext`` with the profile-guided layout (see the module docstring)."""

    def profile_unusable(self) -> str | None:
        """Why ``pgo/`` cannot be used for this build, or None when it can."""
        try:
            stamp = json.loads((PROFILE / "profile.json").read_text())
        except (OSError, ValueError):
            return "no pgo/profile.json"
        command = getattr(self.compiler, "compiler_so", None)  # MSVC's has none
        gcc = gcc_version(command[0]) if command else None
        if gcc != stamp.get("gcc"):
            return f"the compiler is not GCC {stamp.get('gcc')} (found {gcc or 'another'})"
        cython = cython_version()
        if cython != stamp.get("cython"):
            return f"Cython is {cython}, the profile's {stamp.get('cython')}"
        if source_digest() != stamp.get("sources"):
            return "the sources changed since it was made (python scripts/pgo_profile.py)"
        return None

    def build_extensions(self) -> None:
        self.pgo = os.environ.get("MODELROUTER_PGO", "use")
        if self.pgo == "use":
            why = self.profile_unusable()
            if why is not None:
                print(f"modelrouter: built without the profile-guided layout: {why}")
                self.pgo = "off"
        if self.pgo in ("use", "generate"):
            # GCC tells the profile's functions apart by a checksum that includes the object
            # file's path: with another path (pip's temporary build directory) most of them
            # silently lose their counts. Training and use both compile to this one.
            self.build_temp = os.path.join("build", "pgo")
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        obj = None
        if self.pgo == "generate":
            ext.extra_compile_args = [*ext.extra_compile_args, "-fprofile-generate",
                                      "-fprofile-update=atomic"]
            ext.extra_link_args = [*ext.extra_link_args, "-fprofile-generate"]
        elif self.pgo == "use" and (PROFILE / f"{ext.name}.gcda").is_file():
            obj = self.profile_in_place(ext)
            plain = ext.extra_compile_args
            ext.extra_compile_args = [*plain, *USE_PROFILE]
        super().build_extension(ext)
        if obj is not None and obj.is_file() and b".text.hot" not in obj.read_bytes():
            # without its counts -fprofile-use compiles as if nothing ran: slower than plain
            print(f"modelrouter: the profile did not apply to {ext.name} (no hot code); "
                  "built without it")
            ext.extra_compile_args, force = plain, self.force
            self.force = True
            try:
                super().build_extension(ext)
            finally:
                self.force = force

    def profile_in_place(self, ext: Extension) -> Path:
        """Copy the module's counts to where GCC reads them, beside its object file; return
        the object file's path. A function whose code differs from the profile's is compiled
        without it (a warning, not an error)."""
        obj = Path(self.compiler.object_filenames(ext.sources, output_dir=self.build_temp)[0])
        obj.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROFILE / f"{ext.name}.gcda", obj.with_suffix(".gcda"))
        return obj


if __name__ == "__main__":  # as pip's backend runs it; scripts/pgo_profile.py imports the rest
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
