"""The build profile of the compiled request path (``pgo/``, setup.py, scripts/pgo_profile.py).

A stale profile is not an error in the build (GCC compiles a changed function without it), but
it silently gives back what the layout won: these tests make it visible.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "pgo"


@pytest.fixture(scope="module")
def build() -> Any:
    spec = importlib.util.spec_from_file_location("modelrouter_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines; setup() runs only as __main__
    return module


@pytest.fixture(scope="module")
def stamp() -> dict[str, Any]:
    return dict(json.loads((PROFILE / "profile.json").read_text()))


def test_profile_is_of_the_current_sources(build: Any, stamp: dict[str, Any]) -> None:
    assert stamp["sources"] == build.source_digest(), (
        "pgo/ was made from other .pyx/.pxd sources: run `python scripts/pgo_profile.py` and "
        "commit pgo/")


def test_every_extension_has_its_counts(build: Any) -> None:
    for name in build.SOURCES:
        data = (PROFILE / f"{name}.gcda").read_bytes()
        assert data[:4] == b"adcg", name  # GCC's gcda magic, little-endian
        assert len(data) > 1_000, name


def test_digest_moves_with_any_cython_source(build: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to a .pxd (inlined into several modules) makes the profile stale as a .pyx's
    does; a Python module does not."""
    pkg = tmp_path / "modelrouter" / "store"
    pkg.mkdir(parents=True)
    (pkg / "a.pyx").write_text("x = 1\n")
    (pkg / "b.pxd").write_text("cdef int y\n")
    (pkg / "c.py").write_text("z = 1\n")
    monkeypatch.setattr(build, "HERE", tmp_path)
    first = build.source_digest()
    (pkg / "c.py").write_text("z = 2\n")
    assert build.source_digest() == first
    (pkg / "b.pxd").write_text("cdef int y2\n")
    second = build.source_digest()
    assert second != first
    (pkg / "b.pxd").rename(pkg / "d.pxd")  # the same content under another name
    assert build.source_digest() != second


def _fake_compiler(tmp_path: Path, banner: str, version: str) -> str:
    path = tmp_path / "cc"
    path.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{banner}'; "
                    f"else echo {version}; fi\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_only_gcc_gets_the_profile(build: Any, tmp_path: Path) -> None:
    """clang answers ``-dumpfullversion`` too but cannot read GCC's counts."""
    clang = _fake_compiler(tmp_path, "Debian clang version 14.0.6", "14.0.6")
    assert build.gcc_version(clang) is None
    assert build.gcc_version(str(tmp_path / "no-such-compiler")) is None
    gcc = _fake_compiler(tmp_path, "gcc (GCC) 12.2.0\nCopyright (C) 2022 Free Software "
                         "Foundation, Inc.", "12.2.0")
    assert build.gcc_version(gcc) == "12.2.0"


def _skip_unless_the_profiles_toolchain(build: Any, stamp: dict[str, Any]) -> None:
    """Skip unless this machine's compiler is the profile's GCC and Cython its version."""
    gcc, cython = build.gcc_version(build.default_compiler()), build.cython_version()
    if gcc != stamp["gcc"] or cython != stamp["cython"]:
        pytest.skip(f"GCC {gcc} / Cython {cython} here, the profile's {stamp['gcc']} / "
                    f"{stamp['cython']}")


def _installed_extensions() -> list[Path]:
    from modelrouter.config import extensions

    paths = []
    for name in ("modelrouter.store.hot_c", "modelrouter.asgi.middleware_c",
                 "modelrouter.routing.bandit_c"):
        module = extensions.load_extension(name)
        if module is not None and module.__file__:
            paths.append(Path(module.__file__))
    return paths


def test_installed_build_used_the_profile_when_it_could(build: Any,
                                                        stamp: dict[str, Any]) -> None:
    """Where the compiler and Cython here are the profile's, the installed extensions were
    compiled with it (GCC writes its options into the debug info: ``-fprofile-use``; a module
    the profile did not fit is rebuilt without it, see the next test)."""
    paths = _installed_extensions()
    if not paths:
        pytest.skip("the compiled twins are not installed")
    _skip_unless_the_profiles_toolchain(build, stamp)
    if os.environ.get("MODELROUTER_PGO", "use") != "use":
        pytest.skip("MODELROUTER_PGO turns the profile off")
    for path in paths:
        data = path.read_bytes()
        if b"GNU C" not in data:
            pytest.skip(f"{path.name} has no debug info to read the options from")
        assert b"-fprofile-use" in data, f"{path.name} was built without pgo/"


BUILD_ONE = """
import importlib.util
spec = importlib.util.spec_from_file_location("s", "setup.py")
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
from setuptools import Distribution
dist = Distribution({"ext_modules": m.extensions([NAME]), "cmdclass": {"build_ext": m.BuildExt}})
cmd = dist.get_command_obj("build_ext")
cmd.inplace, cmd.build_temp = True, TEMP  # pip's build directory: a temporary one
dist.run_command("build_ext")
"""


def test_the_profile_applies_in_a_build_like_pips(build: Any, stamp: dict[str, Any],
                                                  tmp_path: Path) -> None:
    """A build in another directory, with pip's temporary build directory, lays the module out
    by the profile: GCC put its hot functions in ``.text.hot``. GCC tells a profile's functions
    apart by a checksum that includes the object file's path: the first version compiled where
    pip said, and in pip's builds the counts silently fitted almost nothing (and
    ``-fprofile-use`` without counts made the request path 30-50% slower than the plain build
    in ``benchmarks/bench_cold.py``). With the path changed, the build says so and compiles
    the module plain."""
    import shutil
    import subprocess
    import sys
    _skip_unless_the_profiles_toolchain(build, stamp)
    name = "modelrouter.routing.assignment_c"  # the smallest module: a few seconds
    work = tmp_path / "src"
    shutil.copytree(ROOT / "modelrouter", work / "modelrouter",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", "*.html"))
    shutil.copy(ROOT / "setup.py", work)
    shutil.copytree(PROFILE, work / "pgo")
    code = BUILD_ONE.replace("NAME", repr(name)).replace("TEMP", repr(str(tmp_path / "t")))
    env = {k: v for k, v in os.environ.items() if k != "MODELROUTER_PGO"}

    def run() -> tuple[str, bytes]:
        out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                             text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        so = next((work / "modelrouter" / "routing").glob("assignment_c*.so"))
        return out.stdout, so.read_bytes()

    said, so = run()
    assert "did not apply" not in said and "without the profile" not in said, said
    assert b".text.hot" in (work / "build" / "pgo" / "modelrouter" / "routing" /
                            "assignment_c.o").read_bytes()
    assert b"-fprofile-use" in so
    # the counts of another module: nothing fits, so the module is built plain
    shutil.copy(PROFILE / "modelrouter.store.record_c.gcda", work / "pgo" / f"{name}.gcda")
    said, so = run()
    assert f"the profile did not apply to {name}" in said, said
    assert b"-fprofile-use" not in so


def test_profile_used_only_where_it_fits(build: Any, stamp: dict[str, Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's decision: the profile's GCC, Cython and sources, or the plain build and the
    reason."""
    import types

    cmd = build.BuildExt.__new__(build.BuildExt)

    def why(cc: str) -> str | None:
        cmd.compiler = types.SimpleNamespace(compiler_so=[cc])
        return cmd.profile_unusable()  # type: ignore[no-any-return]

    monkeypatch.setattr(build, "cython_version", lambda: stamp["cython"])
    monkeypatch.setattr(build, "source_digest", lambda: stamp["sources"])
    gcc = _fake_compiler(tmp_path, "gcc 1\nFree Software Foundation", stamp["gcc"])
    assert why(gcc) is None
    other = tmp_path / "other"
    other.mkdir()
    assert "not GCC" in str(why(_fake_compiler(other, "gcc\nFree Software Foundation",
                                                 "99.1.0")))
    clang = tmp_path / "clang"
    clang.mkdir()
    assert "not GCC" in str(why(_fake_compiler(clang, "clang version 14", stamp["gcc"])))
    monkeypatch.setattr(build, "cython_version", lambda: "0.29.0")
    assert "Cython is 0.29.0" in str(why(gcc))
    monkeypatch.setattr(build, "cython_version", lambda: None)
    assert "Cython is None" in str(why(gcc))
    monkeypatch.setattr(build, "cython_version", lambda: stamp["cython"])
    monkeypatch.setattr(build, "source_digest", lambda: "0" * 64)
    assert "sources changed" in str(why(gcc))
    monkeypatch.setattr(build, "PROFILE", tmp_path / "no-profile")
    assert "no pgo/profile.json" in str(why(gcc))


def test_a_compiler_without_a_unix_command_line_builds_plain(build: Any) -> None:
    """MSVC's compiler object has no ``compiler_so``: the plain build, not an AttributeError."""
    import types

    cmd = build.BuildExt.__new__(build.BuildExt)
    cmd.compiler = types.SimpleNamespace()
    assert "not GCC" in str(cmd.profile_unusable())
