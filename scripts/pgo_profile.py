"""Write the build profile of the compiled request path: ``pgo/`` (GCC profile-guided optimisation).

    python scripts/pgo_profile.py            # after changing any .pyx or .pxd; ~1 minute

Why: under a server the router's cost is set more by the instruction-cache lines its request
touches than by its instructions (``benchmarks/simulate_server.py``). Cython's C interleaves
the few blocks a request runs with the many it never runs (type checks that always pass, error
paths, fallbacks for hostile input), so each line fetched holds little of the request. With a
profile, GCC moves the blocks that never ran to a cold section and lays the hot ones out
straight: the A/B request touches about a quarter fewer lines of the router's code
(``benchmarks/footprint.py``), and with the caches cold the router adds about a fifth less
time (``benchmarks/bench_cold.py``). This is how CPython builds its own interpreter.

What it does: copies the package's sources to a temporary directory, builds the extensions
there instrumented (``MODELROUTER_PGO=generate``: setup.py adds ``-fprofile-generate``), runs the
training workload below in that build (``--train``), and copies each extension's counts to
``pgo/<module>.gcda`` with ``pgo/profile.json``: the GCC and Cython versions that wrote them
and a digest of the sources. Both builds compile to ``build/pgo`` (relative): GCC's checksum
of a static function includes the object file's path, so the counts fit only a build that
compiles to the same one. setup.py compiles with the profile only when the compiler is that
GCC, Cython that version and the digest the sources' (else it builds as before and says so);
tests/test_build_profile.py fails when the digest is stale, naming this command.

The training workload is what a service runs: in-process ASGI requests through ``ModelRouter``
in A/B (2 and 3 variants, user and request level, units known and new, a missing unit id, an
excluded path, a streamed body, an app that raises), bandit (2 and 3 arms, sticky), a run-time
switch between them, signed tokens, segments and covariates from headers, and feedback by
decision id, unit id and token. Blocks it never runs are compiled for size, not removed: a
path it misses (the Redis store, shadows) runs correctly, a few cycles slower.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "pgo"


def build_script() -> Any:
    """The project's setup.py as a module (its ``SOURCES``, ``source_digest``, ``gcc_version``;
    importing it does not run ``setup()``)."""
    spec = importlib.util.spec_from_file_location("modelrouter_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the training workload (runs in the instrumented build) ----------------------------------

HEADERS = [(b"host", b"svc"), (b"accept", b"*/*")]


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
            "server": ("svc", 80), "state": {}}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


class _Service:
    """A model service's endpoint: reads the decision, answers in one body or streamed, or
    raises; keeps the decisions it served for feedback."""

    def __init__(self) -> None:
        self.served: list[Any] = []
        self.tokens: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        decision = scope["state"].get("modelrouter")
        if decision is not None:
            self.served.append(decision)
        if scope["path"] == "/boom":
            raise RuntimeError("the model failed")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        if scope["path"] == "/stream":
            await send({"type": "http.response.body", "body": b"o", "more_body": True})
        await send({"type": "http.response.body", "body": b"k"})


async def _serve(router: Any, service: _Service, n: int, users: int, seed: int) -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    for i in range(n):
        headers = [*HEADERS, (b"x-user-id", f"user-{(i * 7919 + seed) % users}".encode()),
                   (b"x-platform", (b"ios", b"android", b"web")[i % 3]),
                   (b"x-pre-clicks", str(i % 5).encode())]
        path = "/predict"
        if i % 97 == 0:
            headers = HEADERS  # no unit id
        if i % 89 == 0:
            path = "/stream"
        if i % 211 == 0:
            path = "/health"  # excluded
        with contextlib.suppress(RuntimeError):  # the app's failure reaches the server
            await router(_scope("/boom" if i % 503 == 0 else path, headers), _receive, send)
        if sent:
            token = dict(sent[0]["headers"]).get(b"x-modelrouter-token")
            if token is not None:
                service.tokens.append(token.decode())
        sent.clear()


def _feedback(router: Any, service: _Service) -> None:
    """Feedback on what was served: by decision id (router and experiment), unit id, token.
    Refusals (a request-level unit id, an uncounted decision) are part of the workload."""
    from modelrouter.exceptions import ModelRouterError

    for k, decision in enumerate(service.served):
        try:
            if k % 3 == 0:
                router.record(decision.decision_id, "click", k % 2)
            elif k % 3 == 1:
                router.experiment.record(decision, "revenue", float(k % 7))
            elif decision.unit_id is not None:
                router.record_unit(decision.unit_id, "revenue", 1.5)
        except ModelRouterError:
            pass
    for k, token in enumerate(service.tokens):
        if k % 2 == 0:
            router.record_token(token, "click", 1)
    service.served.clear()
    service.tokens.clear()


def train(requests: int) -> None:
    """Run the workload: ``requests`` per scenario and round."""
    import modelrouter
    from modelrouter import ModelRouter, RouterConfig

    if not str(Path(modelrouter.__file__).parent).startswith(os.environ.get("MODELROUTER_TRAIN",
                                                                             "\0")):
        raise SystemExit(f"training the wrong build: {modelrouter.__file__}")
    metrics = {"click": "binary", "revenue": "continuous"}
    two = {"control": 0, "treatment": 1}
    three = {"control": 0, "a": 1, "b": 2}
    scenarios: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (two, {"reward": "click"}),
        (three, {"weights": {"control": 0.5, "a": 0.3, "b": 0.2}}),
        (two, {"level": "request"}),
        (two, {"mode": "bandit", "reward": "click"}),
        (three, {"mode": "bandit", "reward": "click", "sticky_seconds": 60.0}),
        (two, {"secret": "s" * 32, "segments": {"platform": "x-platform"},
               "metrics": {"click": {"kind": "binary", "covariates": ["pre_clicks"]},
                           "revenue": "continuous"},
               "covariate_headers": {"pre_clicks": "x-pre-clicks"}}),
    ]
    for r, (variants, extra) in enumerate(scenarios):
        service = _Service()
        config = RouterConfig(**{"metrics": metrics, "exclude_paths": ("/health",), **extra})
        router = ModelRouter(service, variants, config)
        for round_ in range(3):
            asyncio.run(_serve(router, service, requests, users=requests // 2, seed=round_))
            _feedback(router, service)
            if r == 0 and round_ == 1:  # the run-time switch, and back
                router.configure(mode="bandit")
            if r == 3 and round_ == 1:
                router.configure(mode="ab")
        router.flush()


# ---- the build -------------------------------------------------------------------------------

def make_profile(requests: int) -> None:
    """Build instrumented in a temporary copy, train, and write ``pgo/``."""
    build = build_script()
    gcc = build.gcc_version(build.default_compiler())
    if gcc is None:
        raise SystemExit("the profile is GCC's: build with GCC (CC names another compiler)")

    with tempfile.TemporaryDirectory(prefix="modelrouter-pgo-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "modelrouter", work / "modelrouter",
                        ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
        for name in ("setup.py", "pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, work / name)
        env = {**os.environ, "MODELROUTER_PGO": "generate"}
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=work,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, __file__, "--train", "--requests", str(requests)],
                       cwd=work, check=True,
                       env={**os.environ, "PYTHONPATH": str(work),
                            "MODELROUTER_TRAIN": str(work / "modelrouter")})
        counts = {name: work / "build" / "pgo" / Path(src).with_suffix(".gcda")
                  for name, src in build.SOURCES.items()}
        missing = [name for name, path in counts.items() if not path.is_file()]
        if missing:
            raise SystemExit(f"no profile written for {', '.join(missing)}")
        if PROFILE.exists():
            shutil.rmtree(PROFILE)
        PROFILE.mkdir()
        for name, path in counts.items():
            shutil.copy(path, PROFILE / f"{name}.gcda")
    stamp = {"gcc": gcc, "cython": build.cython_version(), "sources": build.source_digest(),
             "requests": requests,
             "made_by": "python scripts/pgo_profile.py"}
    (PROFILE / "profile.json").write_text(json.dumps(stamp, indent=2) + "\n")
    print(f"wrote {PROFILE} ({len(counts)} profiles, gcc {stamp['gcc']}, "
          f"Cython {stamp['cython']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=6_000,
                        help="requests per scenario and round (default 6,000)")
    parser.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        train(args.requests)
    else:
        make_profile(args.requests)


if __name__ == "__main__":
    main()
