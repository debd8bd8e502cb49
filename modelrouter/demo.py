"""`modelrouter demo`: a real end-to-end experiment, nothing mocked.

Two scikit-learn classifiers are trained on the handwritten digits that ship with
scikit-learn: the control is a PCA + logistic regression, the treatment an RBF support vector
machine. A Starlette app serves ``POST /predict`` behind :class:`~modelrouter.ModelRouter`.
Simulated users send digit images through the ASGI interface; a user accepts a prediction
(``click``) more often when it is right, sometimes buys (``revenue``), and part of the
feedback arrives late, after other users' requests. Each user has a platform (a segment read
from a header); four official looks of the group-sequential test on ``click`` are recorded as
users finish. The full analysis report is printed at the end.
"""

from __future__ import annotations

import asyncio
import io
import random
import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from modelrouter.config import RouterConfig
from modelrouter.router import ModelRouter
from modelrouter.testing import ASGIClient

__all__ = ["Classifier", "DemoResult", "build_app", "run_demo", "train_models"]

LOOKS = 4
PLATFORMS = ("desktop", "mobile", "tablet")


class Classifier(Protocol):
    """What the demo's service needs from a model: scikit-learn's ``predict``."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One predicted label per row of ``x``."""
        ...


def train_models(seed: int = 0) -> tuple[Classifier, Classifier, np.ndarray, np.ndarray]:
    """Train the control and treatment models; return them with the held-out digits."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=seed)
    control = make_pipeline(PCA(n_components=5, random_state=seed),
                            LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    treatment = SVC(gamma=0.001).fit(x_train, y_train)
    return control, treatment, x_test, y_test


def build_app() -> Starlette:
    """The inference service: it only knows ``request.state.modelrouter``."""

    async def predict(request: Request) -> JSONResponse:
        payload = await request.json()
        decision = request.state.modelrouter
        label = int(decision.model.predict(np.asarray([payload["pixels"]]))[0])
        return JSONResponse({"label": label, "variant": decision.variant,
                             "decision_id": decision.decision_id})

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                             Route("/health", health)])


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for tests and the final printout."""

    router: ModelRouter
    requests: int
    feedback: int
    late_feedback: int
    seconds: float
    accuracy: dict[str, float]


class _Progress:
    """A one-line progress bar on a text stream (no dependency)."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total, self.stream, self.width, self.done = total, stream, width, 0
        self.start = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.done % max(1, self.total // 100) and self.done != self.total:
            return
        frac = self.done / self.total
        bar = "#" * int(frac * self.width)
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(f"\r  users [{bar:<{self.width}}] {self.done:>6,}/{self.total:,} "
                          f"({rate:,.0f}/s)")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


async def _simulate(router: ModelRouter, users: int, seed: int, x_test: np.ndarray,
                    y_test: np.ndarray, progress: _Progress | None, concurrency: int = 32
                    ) -> tuple[int, int, int, dict[str, list[int]]]:
    """Drive ``users`` simulated users through the router, ``concurrency`` at a time; return
    (requests, feedback events, late ones, per variant whether each prediction was right)."""
    rng = random.Random(seed)
    client = ASGIClient(router)
    late: list[tuple[str, str, float]] = []
    counts = {"requests": 0, "feedback": 0}
    correct: dict[str, list[int]] = {name: [] for name in router.experiment.names}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(users):
        queue.put_nowait(i)

    async def user_session(i: int) -> None:
        unit = f"user-{i:06d}"
        platform = PLATFORMS[i % len(PLATFORMS)]
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(y_test))
            resp = await client.post("/predict", headers={"x-user-id": unit,
                                                          "x-platform": platform},
                                     json={"pixels": x_test[k].tolist()})
            body = resp.json()
            counts["requests"] += 1
            right = int(body["label"] == int(y_test[k]))
            correct[body["variant"]].append(right)
            if rng.random() < (0.30 if right else 0.05):
                amount = round(rng.expovariate(1 / 25.0), 2)
                if rng.random() < 0.3:  # this user's feedback comes in much later
                    late.append((body["decision_id"], "click", 1))
                    late.append((body["decision_id"], "revenue", amount))
                else:
                    router.record(body["decision_id"], "click", 1)
                    router.record(body["decision_id"], "revenue", amount)
                    counts["feedback"] += 2

    finished = 0
    milestones = [users * (k + 1) // LOOKS for k in range(LOOKS)]

    async def worker() -> None:
        nonlocal finished
        while not queue.empty():
            i = queue.get_nowait()
            await user_session(i)
            finished += 1
            if finished in milestones:  # an official interim look of the sequential test
                router.record_look()
            if progress:
                progress.advance()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    for decision_id, metric, value in late:  # delayed conversions, attributed by decision id
        router.record(decision_id, metric, value)
    return counts["requests"], counts["feedback"] + len(late), len(late), correct


def run_demo(users: int = 4000, seed: int = 7, stream: TextIO | None = sys.stdout,
             progress: bool = True, progress_stream: TextIO | None = None) -> DemoResult:
    """Train, serve, simulate ``users`` users, and print the analysis report to ``stream``.

    The progress bar goes to ``progress_stream`` (default: ``stream``); the command line sends
    it to stderr so that a redirected report holds no progress frames."""
    out = stream if stream is not None else io.StringIO()  # no stream: the text is dropped
    started = time.perf_counter()
    out.write("modelrouter demo: digits classifier, PCA+logistic (control) vs RBF SVM "
              "(treatment)\n")
    control, treatment, x_test, y_test = train_models(seed)
    config = RouterConfig(experiment="digits-demo", salt="digits-demo-2026",
                          metrics={"click": "binary", "revenue": "continuous"},
                          primary="click", segments={"platform": "x-platform"},
                          plan={"mde": 0.044, "baseline": 0.5, "looks": LOOKS},
                          exclude_paths=["/health"])
    router = ModelRouter(build_app(), {"control": control, "treatment": treatment}, config)
    bar = _Progress(users, progress_stream or out) if progress else None
    n_req, n_fb, n_late, correct = asyncio.run(
        _simulate(router, users, seed, x_test, y_test, bar))
    seconds = time.perf_counter() - started
    accuracy = {v: float(np.mean(c)) if c else float("nan") for v, c in correct.items()}
    out.write(f"\n{n_req:,} requests from {users:,} users, {n_fb:,} feedback events "
              f"({n_late:,} late) in {seconds:.1f} s\n")
    out.write("served accuracy: " + ", ".join(f"{v} {a:.3f}" for v, a in accuracy.items())
              + "\n\n")
    out.write(router.analysis().report() + "\n")  # includes the segments by platform
    out.flush()
    return DemoResult(router, n_req, n_fb, n_late, seconds, accuracy)
