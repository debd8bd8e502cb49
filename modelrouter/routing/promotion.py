"""Promotion of a shadow to a served arm: the stage of each candidate and its events.

**Design: every shadow is an arm from the start, held at weight 0.** ``ModelRouter(...,
shadows={"candidate": model})`` registers each shadow as one more variant of the experiment
(after the served ones), with A/B weight 0 and *inactive* (as a paused arm: the bandit leaves
it out too). Promotion is then nothing but a change of the routing state
(:meth:`RoutingState.set_stage <modelrouter.routing.state.RoutingState.set_stage>`): a
read-modify-write under its lock, a new epoch, the new propensities given to
``store.begin_epoch``, and with Redis the whole record published through the shared control
plane, so every worker routes by it within one flush. Why not add the arm when it is
promoted: the store's columns, the Redis layout (per-variant counters and hashes), snapshots
and their identity checks, decision tokens, the SRM's expected shares and every analysis are
built for a fixed list of variants; adding one at run time would change each of them and
their compatibility rules (a snapshot taken before the promotion would no longer restore).
A held arm costs one entry per per-variant counter and nothing on the request path (weight 0
is never chosen). The analysis treats an arm that was never served (weight 0 in every epoch
and no unit) as absent: no verdict, comparison, guardrail or Bonferroni share for it
(:meth:`AnalysisData.treatments <modelrouter.analysis.data.AnalysisData.treatments>`); the
SRM already expects 0 units of it.

**Weights.** A candidate at share ``s`` gets ``s`` and the other arms share ``1 - s`` in
proportion to their A/B weights before (:func:`staged_weights`); back to ``shadow`` it gets 0
and the others are scaled back to 1; ``ship`` gives it everything.

**Validity across the promotion epoch.** A promotion is a weight change like ``configure``:
a unit keeps the variant of its first exposure for the analysis (unit level: its row, first
variant and epoch never change), each unit is analysed under the propensity of the epoch it
entered in (SRM and comparisons per epoch; Hajek weights across epochs of one A/B phase), and
a unit whose hash now falls in the candidate's range is *served* the candidate from the new
epoch on while still counted under its first variant (the same rule, and the same small
dilution, as every weight change; docs/statistics.md).

**Refusals** (ConfigError, before anything changes): an unknown candidate, a share outside
(0, 1), a stage other than canary/ab/ship, a promotion to the stage the candidate is already
at or a smaller share (exposure only grows; a rollout's rollback is the way back), bandit
mode (the bandit chooses shares itself: promote in A/B mode, or switch to A/B first), and
while a guardrail rollback holds traffic on the control (``resume()`` first). A rollback of
the stage is allowed while held.

Thread safety: immutable values; the routing state replaces them whole under its lock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from modelrouter.exceptions import ConfigError

__all__ = ["MAX_STAGE_EVENTS", "STAGES", "CandidateStage", "EventKind", "StageEvent", "Stages",
           "check_promotion", "stage_after", "staged_weights"]

STAGES = ("shadow", "canary", "ab", "ship")
_RANK = {s: i for i, s in enumerate(STAGES)}
EventKind = Literal["promote", "advance", "rollback", "stop", "ship"]
_KINDS: tuple[EventKind, ...] = ("promote", "advance", "rollback", "stop", "ship")


def _when(at: float) -> str:
    try:
        return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):  # an injected clock far from the epoch
        return f"{at:g}"


@dataclass(frozen=True)
class CandidateStage:
    """Where one candidate is: its stage and share, since when (time and epoch), the index of
    the rollout stage it is at (None: not following a rollout plan) and whether the automatic
    rollout has stopped for it (after a rollback, or a manual promotion off the plan)."""

    candidate: str
    stage: str = "shadow"
    share: float = 0.0
    since: float = 0.0
    epoch: int = 0
    index: int | None = None
    stopped: bool = False

    def __repr__(self) -> str:
        plan = "" if self.index is None else f", rollout stage {self.index}"
        stop = ", rollout stopped" if self.stopped else ""
        return (f"CandidateStage({self.candidate!r}: {self.stage} at share {self.share:g} "
                f"since epoch {self.epoch}{plan}{stop})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {"candidate": self.candidate, "stage": self.stage, "share": self.share,
                "since": self.since, "when": _when(self.since), "epoch": self.epoch,
                "index": self.index, "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CandidateStage:
        """The value of :meth:`to_dict` (as another worker published it)."""
        index = data.get("index")
        return cls(str(data["candidate"]), str(data["stage"]), float(data["share"]),
                   float(data["since"]), int(data["epoch"]),
                   None if index is None else int(index), bool(data.get("stopped", False)))


@dataclass(frozen=True)
class StageEvent:
    """One transition of a candidate: when, from which stage and share to which, why, and
    the numbers behind the decision (units seen, the gate's estimate and bounds...)."""

    candidate: str
    kind: EventKind
    at: float
    from_stage: str
    to_stage: str
    from_share: float
    to_share: float
    reason: str
    epoch: int = 0  # the epoch the new stage routes in
    numbers: Mapping[str, float] = field(default_factory=dict)

    @property
    def when(self) -> str:
        """``at`` as an ISO 8601 UTC time."""
        return _when(self.at)

    def __repr__(self) -> str:
        return (f"StageEvent({self.kind} {self.candidate!r} {self.from_stage} -> "
                f"{self.to_stage} at {self.when}: {self.reason})")

    def line(self) -> str:
        """One line for the report and the dashboard."""
        nums = ", ".join(f"{k} {v:.4g}" for k, v in self.numbers.items())
        return (f"{self.when} {self.kind}: {self.candidate} {self.from_stage} "
                f"({self.from_share:g}) -> {self.to_stage} ({self.to_share:g}), epoch "
                f"{self.epoch}: {self.reason}" + (f" [{nums}]" if nums else ""))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (non-finite numbers become None)."""
        return {"candidate": self.candidate, "kind": self.kind, "at": self.at,
                "when": self.when, "from_stage": self.from_stage, "to_stage": self.to_stage,
                "from_share": self.from_share, "to_share": self.to_share,
                "reason": self.reason, "epoch": self.epoch,
                "numbers": {k: (float(v) if math.isfinite(v) else None)
                            for k, v in self.numbers.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageEvent:
        """The event of :meth:`to_dict`."""
        kind: EventKind = "stop"
        for k in _KINDS:
            if k == data["kind"]:
                kind = k
        return cls(str(data["candidate"]), kind, float(data["at"]), str(data["from_stage"]),
                   str(data["to_stage"]), float(data["from_share"]), float(data["to_share"]),
                   str(data["reason"]), int(data.get("epoch", 0)),
                   {str(k): (math.nan if v is None else float(v))
                    for k, v in dict(data.get("numbers") or {}).items()})


MAX_STAGE_EVENTS = 200  # kept (the newest), also in the shared record


@dataclass(frozen=True)
class Stages:
    """Every candidate's stage and the transitions so far (oldest first)."""

    current: Mapping[str, CandidateStage] = field(default_factory=dict)
    events: tuple[StageEvent, ...] = ()

    @classmethod
    def start(cls, candidates: Sequence[str], planned: Mapping[str, bool]) -> Stages:
        """Every candidate in its shadow stage; ``planned[c]``: c follows a rollout plan
        whose first stage is ``shadow`` (index 0)."""
        return cls({c: CandidateStage(c, index=0 if planned.get(c) else None)
                    for c in candidates})

    def moved(self, stage: CandidateStage, event: StageEvent) -> Stages:
        """With ``stage`` in force and ``event`` appended."""
        current = dict(self.current)
        current[stage.candidate] = stage
        return Stages(current, (*self.events, event)[-MAX_STAGE_EVENTS:])

    def to_data(self) -> dict[str, Any]:
        """Plain data for the shared record and snapshots."""
        return {"current": [s.to_dict() for s in self.current.values()],
                "events": [e.to_dict() for e in self.events]}

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None, fallback: Stages) -> Stages:
        """The value of :meth:`to_data`; ``fallback`` when there is none (an older record)."""
        if not data:
            return fallback
        current = {s.candidate: s for s in map(CandidateStage.from_dict, data["current"])}
        return cls(current, tuple(StageEvent.from_dict(e) for e in data["events"]))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the analysis document: stages by candidate, and the events."""
        return {"current": {c: s.to_dict() for c, s in self.current.items()},
                "events": [e.to_dict() for e in self.events]}

    def lines(self) -> list[str]:
        """The report's lines: every candidate's stage, then every event."""
        return [repr(s) for s in self.current.values()] + [e.line() for e in self.events]


def staged_weights(ab: Mapping[str, float], candidate: str, share: float,
                   control: str) -> dict[str, float]:
    """The A/B weights with ``candidate`` at ``share`` (see the module docstring)."""
    if share >= 1.0:
        return {n: 1.0 if n == candidate else 0.0 for n in ab}
    rest = math.fsum(w for n, w in ab.items() if n != candidate)
    if rest <= 0:  # nobody else had traffic (after a ship, say): the control takes the rest
        return {n: share if n == candidate else (1.0 - share if n == control else 0.0)
                for n in ab}
    return {n: share if n == candidate else w * (1.0 - share) / rest for n, w in ab.items()}


def check_promotion(stages: Stages, candidate: object, stage: object, share: object, *,
                    mode: str, held: bool) -> tuple[str, str, float]:
    """Validate a promotion (see the module docstring); ``(candidate, stage, share)``."""
    if not isinstance(candidate, str) or candidate not in stages.current:
        raise ConfigError(f"promote: candidate ({str(candidate)[:80]!r}) must be one of the "
                          f"shadows {sorted(stages.current)!r}")
    if stage not in ("canary", "ab", "ship"):
        raise ConfigError(f"promote: stage ({str(stage)[:40]!r}) must be one of 'canary', "
                          "'ab', 'ship'")
    if stage == "ship":  # everyone: the share is 1
        if share is not None and (isinstance(share, bool) or share != 1.0):
            raise ConfigError(f"promote: share ({str(share)[:40]!r}) must be None or 1 for "
                              "'ship' (it serves everyone)")
        share = 1.0
    elif (isinstance(share, bool) or not isinstance(share, (int, float))
            or not math.isfinite(share) or not 0.0 < share < 1.0):
        raise ConfigError(f"promote: share ({str(share)[:40]!r}) must be a number in (0, 1)")
    assert isinstance(share, (int, float))
    if mode != "ab":
        raise ConfigError(f"promote: the experiment is in {mode!r} mode, where the bandit sets "
                          "the shares; switch to A/B (configure(mode='ab')) to promote "
                          f"{candidate!r}")
    if held:
        raise ConfigError(f"promote: a guardrail rollback holds all traffic on the control; "
                          f"resume() before promoting {candidate!r}")
    cur = stages.current[candidate]
    if _RANK[str(stage)] <= _RANK[cur.stage] or float(share) <= cur.share:
        raise ConfigError(f"promote: {candidate!r} is already at {cur.stage} (share "
                          f"{cur.share:g}); a promotion must go to a later stage with a larger "
                          f"share, got {stage} at {float(share):g}")
    return candidate, str(stage), float(share)


def stage_after(cur: CandidateStage, stage: str, share: float, at: float, epoch: int, *,
                index: int | None, stopped: bool) -> CandidateStage:
    """``cur`` moved to ``stage`` at ``share`` from ``epoch`` on."""
    return replace(cur, stage=stage, share=share, since=at, epoch=epoch, index=index,
                   stopped=stopped)
