"""Cost of the HTTP surface on the routed path, and of decision tokens.

    python benchmarks/bench_http.py [--rounds 15] [--calls 20000]

Direct ASGI calls on a trivial Starlette endpoint, same run, interleaved rounds:

- ``off``: no secret, no admin token (nothing mounted);
- ``mounted``: admin token set, so the endpoints are mounted (one prefix check per request) and
  the per-variant latency histogram for /metrics is updated on every response;
- ``mounted+token``: also a secret, so every routed response carries a signed token.

Then the cost of signing a decision (what ``mounted+token`` adds) and of verifying a token.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from typing import Any

from _harness import interleaved, per_call_us, table
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelrouter import ModelRouter, RouterConfig
from modelrouter.routing.decision import Decision
from modelrouter.routing.tokens import Signer

SECRET = "benchmark-secret-0123456789abcdef"
ADMIN = "benchmark-admin-0123456789abcdef"


def make_app() -> Starlette:
    async def predict(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")
    return Starlette(routes=[Route("/predict", predict)])


def router(**kwargs: Any) -> ModelRouter:
    return ModelRouter(make_app(), {"control": 0, "treatment": 1},
                       RouterConfig(metrics={"click": "binary"}, **kwargs))


def token_costs(n: int) -> tuple[float, float]:
    signer = Signer(SECRET, "experiment")
    d = Decision("0a1b2c3d-1f3a", "treatment", None, "user-123456", 0.5, 3, "ab", time.time())
    token = signer.sign_decision(d).decode()
    sign = min(timeit.repeat(lambda: signer.sign_decision(d), number=n, repeat=7)) / n * 1e6
    verify = min(timeit.repeat(lambda: signer.verify(token, max_age=3600), number=n,
                               repeat=7)) / n * 1e6
    return sign, verify


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20_000)
    args = ap.parse_args()
    apps = {"off": router(), "mounted": router(admin_token=ADMIN),
            "mounted+token": router(admin_token=ADMIN, secret=SECRET)}
    for app in apps.values():
        per_call_us(app, 2_000)  # warm up
    runs = interleaved({k: (lambda a=a: per_call_us(a, args.calls)) for k, a in apps.items()},
                       args.rounds)
    base = statistics.median(runs["off"])
    rows = []
    for name, values in runs.items():
        med = statistics.median(values)
        rows.append([name, f"{med:.2f}", f"{min(values):.2f}..{max(values):.2f}",
                     f"{med - base:+.2f}", f"{med / base:.3f}"])
    print(f"routed request, direct ASGI, {args.calls:,} calls x {args.rounds} interleaved "
          "rounds")
    print(table(["surface", "us/request (median)", "min..max", "vs off (us)", "ratio"], rows))
    sign, verify = token_costs(100_000)
    print()
    print(table(["token", "us"], [["sign_decision", f"{sign:.2f}"],
                                  ["verify (with expiry)", f"{verify:.2f}"]]))


if __name__ == "__main__":
    main()
