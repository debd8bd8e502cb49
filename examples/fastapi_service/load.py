"""Send users to the example service, post their clicks as feedback, print ``modelrouter status``.

Each user (``user-<i>``) asks ``/predict`` once with its features; it clicks with probability
0.8 when the prediction is right and 0.2 when it is wrong, so the better model earns more
clicks. The click goes back with the response's signed token to ``/_modelrouter/feedback``.
At the end the script runs ``python -m modelrouter status URL`` (the admin token from
``$MODELROUTER_ADMIN_TOKEN``) and prints its report.

    python examples/fastapi_service/load.py --url http://127.0.0.1:8000 --users 2000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from example_data import N_TRAIN, problem


def _post(url: str, body: object, headers: dict[str, str]) -> tuple[dict[str, object], str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        token = response.headers.get("x-modelrouter-token", "")
        return json.loads(response.read()), token


def one_user(url: str, i: int, features: list[float], label: int, seed: int
             ) -> tuple[str, int]:
    """Route user ``i``, draw its click, post it back; return (variant, click)."""
    answer, token = _post(f"{url}/predict", {"features": features}, {"x-user-id": f"user-{i}"})
    rng = random.Random(seed * 1_000_003 + i)
    click = int(rng.random() < (0.8 if answer["prediction"] == label else 0.2))
    _post(f"{url}/_modelrouter/feedback", {"token": token, "metric": "click", "value": click},
          {})
    return str(answer["variant"]), click


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    x, y = problem()
    users = range(min(args.users, len(y) - N_TRAIN))
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda i: one_user(args.url, i, x[N_TRAIN + i].tolist(),
                                                   int(y[N_TRAIN + i]), args.seed), users))
    sent, clicks = Counter(v for v, _ in results), Counter(v for v, c in results if c)
    for variant in sorted(sent):
        print(f"{variant}: {sent[variant]} users, {clicks[variant]} clicks")
    print(flush=True)
    status = subprocess.run([sys.executable, "-m", "modelrouter", "status", args.url],
                            check=False)
    return status.returncode


if __name__ == "__main__":
    sys.exit(main())
