"""The declarative rollout of a candidate model: ordered stages, each with the gate to advance.

A rollout takes a candidate from watching it on live traffic to serving everyone::

    rollout={"candidate": [
        {"stage": "shadow", "min_units": 2000, "advance_if": "no_worse"},
        {"stage": "canary", "share": 0.05, "min_units": 5000, "advance_if": "guardrails_pass"},
        {"stage": "ab", "share": 0.5, "advance_if": {"name": "primary_better"}},
        {"stage": "ship"}]}

Stages, in this order (``canary`` and ``ab`` may repeat with strictly increasing shares;
``shadow`` at most once and first; ``ship`` exactly once and last, after at least one other):

- ``shadow``: the candidate gets a copy of the requests and is never served (issue 15 part 1);
  ``share`` (optional, in (0, 1]) is the share of units shadowed, default all;
- ``canary``: the candidate is served to ``share`` (required, in (0, 1]) of units, watched
  mainly through guardrails;
- ``ab``: a randomised test at ``share`` (required, in (0, 1]) judged on the primary metric;
- ``ship``: the candidate serves everyone; no field besides ``stage``.

Fields of every stage but ``ship``:

- ``advance_if`` (required): the gate, a name or ``{"name": ..., <parameters>}``;
- ``min_units`` (optional positive int): units the stage must see before its gate is read;
- ``max_units`` (optional positive int, ``>= min_units``): if the gate has not held by then,
  the stage ends in a rollback rather than lasting forever;
- ``rollback_to`` (``canary`` and ``ab`` only): ``"previous"`` (default: back to the previous
  stage) or ``"control"`` (the candidate stops being served).

Gates (:data:`GATES`; parameters and their defaults):

- ``no_worse`` (shadow, canary, ab): the candidate is not worse than the served model by more
  than ``margin`` (number >= 0, default 0; absolute, on the paired accuracy or loss in the
  shadow stage, on the primary metric otherwise) at one-sided level ``alpha`` (in (0, 1),
  default 0.05): the confidence bound on the harm stays below the margin;
- ``guardrails_pass`` (shadow, canary, ab): every configured guardrail holds (in the shadow
  stage: the latency and error guardrails, on the paired statistics); no parameters;
- ``primary_better`` (ab): the primary metric's always-valid (mSPRT) test of candidate vs
  control rejects in favour of the candidate at the plan's alpha; no parameters. Always
  valid rather than the group-sequential test: the rollout monitor reads the analysis every
  ``guardrail_check_every`` events, and the group-sequential boundaries hold only at recorded
  official looks, which a background monitor must not record on its own; the mSPRT p-value
  stays valid however often it is read (Johari et al. 2017);
- ``agreement_at_least`` (shadow): the lower confidence bound of the label agreement rate is
  at least ``rate`` (required, in (0, 1]).

Gates that read the primary metric in a served stage (``no_worse`` in canary/ab,
``primary_better``) need ``primary`` and ``plan`` in the config (the always-valid test takes
its alpha and mixing variance from the plan).

Every malformed input raises :class:`~modelrouter.exceptions.ConfigError` naming the field
path (``rollout.candidate[1].share``) and repeating the value. ``RouterConfig(rollout=...)``
checks the shape with :meth:`Rollout.parse_shape` (it does not know the variants);
``ModelRouter`` checks the candidates against its variants and shadows
(:meth:`Rollout.parse`). The :class:`~modelrouter.rollout_monitor.RolloutMonitor` runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modelrouter.config._checks import (
    check_choice,
    check_integer,
    check_keys,
    check_list,
    check_mapping,
    check_name,
    check_number,
    check_positive_int,
    choices,
    invalid,
)
from modelrouter.exceptions import ConfigError

__all__ = [
    "GATES",
    "CandidateRollout",
    "GateName",
    "GateRule",
    "GateSpec",
    "Rollout",
    "RollbackTarget",
    "StageName",
    "StageSpec",
]

StageName = Literal["shadow", "canary", "ab", "ship"]
GateName = Literal["no_worse", "guardrails_pass", "primary_better", "agreement_at_least"]
RollbackTarget = Literal["previous", "control"]
_RANK = {name: i for i, name in enumerate(choices(StageName))}
_SERVED = frozenset({"canary", "ab"})


def _margin(path: str, value: object) -> float:
    return check_number(path, value, low=0)


def _alpha(path: str, value: object) -> float:
    return check_number(path, value, low=0, high=1, low_open=True, high_open=True)


def _rate(path: str, value: object) -> float:
    return check_number(path, value, low=0, high=1, low_open=True)


@dataclass(frozen=True)
class GateRule:
    """What a gate accepts: the stages it may guard and its parameters ``name -> (check,
    default)``; a default of ``None`` marks a required parameter."""

    stages: frozenset[str]
    params: Mapping[str, tuple[Callable[[str, object], float], float | None]]
    doc: str


GATES: Mapping[str, GateRule] = {
    "no_worse": GateRule(frozenset({"shadow", "canary", "ab"}),
                         {"margin": (_margin, 0.0), "alpha": (_alpha, 0.05)},
                         "not worse than the served model by more than margin, at level alpha"),
    "guardrails_pass": GateRule(frozenset({"shadow", "canary", "ab"}), {},
                                "every configured guardrail holds"),
    "primary_better": GateRule(frozenset({"ab"}), {},
                               "the primary metric's planned test favours the candidate"),
    "agreement_at_least": GateRule(frozenset({"shadow"}), {"rate": (_rate, None)},
                                   "the agreement rate's lower confidence bound >= rate"),
}


@dataclass(frozen=True)
class GateSpec:
    """A gate by name with its parameters (defaults filled in), sorted by name."""

    name: str
    params: tuple[tuple[str, float], ...] = ()

    def param(self, key: str) -> float:
        """The value of one parameter (``KeyError`` if the gate has no such parameter)."""
        return dict(self.params)[key]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.name}({args})"

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., <parameters>}``, the config's own shape."""
        return {"name": self.name, **dict(self.params)}


@dataclass(frozen=True)
class StageSpec:
    """One stage of a rollout (see the module docstring for the fields)."""

    stage: str
    share: float | None = None
    min_units: int | None = None
    max_units: int | None = None
    advance_if: GateSpec | None = None
    rollback_to: str | None = None

    def __repr__(self) -> str:
        parts = [self.stage]
        if self.share is not None:
            parts.append(f"share={self.share:g}")
        if self.min_units is not None:
            parts.append(f"min_units={self.min_units}")
        if self.max_units is not None:
            parts.append(f"max_units={self.max_units}")
        if self.advance_if is not None:
            parts.append(f"advance_if={self.advance_if!r}")
        if self.rollback_to is not None:
            parts.append(f"rollback_to={self.rollback_to}")
        return "StageSpec(" + ", ".join(parts) + ")"

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the config's own shape (fields left unset are omitted)."""
        out: dict[str, Any] = {"stage": self.stage}
        for key in ("share", "min_units", "max_units", "rollback_to"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.advance_if is not None:
            out["advance_if"] = self.advance_if.to_dict()
        return out


@dataclass(frozen=True)
class CandidateRollout:
    """The ordered stages of one candidate."""

    candidate: str
    stages: tuple[StageSpec, ...]

    def __repr__(self) -> str:
        return f"CandidateRollout({self.candidate!r}: " + " -> ".join(
            repr(s) for s in self.stages) + ")"

    def to_dict(self) -> list[dict[str, Any]]:
        """The list of stages, as written in the config."""
        return [s.to_dict() for s in self.stages]


def _gate(path: str, value: object, stage: str) -> GateSpec:
    base = path
    raw: object = value
    given: dict[object, object] = {}
    if not isinstance(value, str):
        mapping = check_mapping(path, value, expected="a gate name or a mapping with 'name'")
        if "name" not in mapping:
            raise ConfigError(f"{path}: a gate mapping needs 'name' (one of "
                              f"{', '.join(map(repr, choices(GateName)))})")
        raw, given = mapping["name"], {k: v for k, v in mapping.items() if k != "name"}
        path = f"{path}.name"
    check_choice(path, raw, GateName)
    name = str(raw)
    rule = GATES[name]
    if stage not in rule.stages:
        raise invalid(base, name, f"a gate of a stage in {sorted(rule.stages)}; stage "
                      f"'{stage}' cannot use it")
    unknown = sorted(str(k) for k in given if k not in rule.params)
    if unknown:
        raise ConfigError(f"{base}.{unknown[0]}: unknown parameter of gate {name!r}; its "
                          f"parameters are {sorted(rule.params)}")
    params = []
    for key, (check, default) in sorted(rule.params.items()):
        if key in given:
            params.append((key, check(f"{base}.{key}", given[key])))
        elif default is None:
            raise ConfigError(f"{base}: gate {name!r} needs parameter '{key}'")
        else:
            params.append((key, default))
    return GateSpec(name, tuple(params))


_STAGE_KEYS = frozenset({"stage", "share", "min_units", "max_units", "advance_if",
                         "rollback_to"})


def _stage(path: str, value: object) -> StageSpec:
    spec = check_mapping(path, value, expected="a mapping with 'stage' and its fields")
    check_keys(path, spec, _STAGE_KEYS, what="stage field")
    if "stage" not in spec:
        raise ConfigError(f"{path}: missing 'stage' (one of "
                          f"{', '.join(map(repr, choices(StageName)))})")
    check_choice(f"{path}.stage", spec["stage"], StageName)
    stage = str(spec["stage"])
    if stage == "ship":
        extra = sorted((str(k), v) for k, v in spec.items() if k != "stage")
        if extra:
            raise invalid(f"{path}.{extra[0][0]}", extra[0][1], "absent: the 'ship' stage takes "
                          "no field besides 'stage' (it serves the candidate to everyone)")
        return StageSpec("ship")
    share = None
    if stage in _SERVED and "share" not in spec:
        raise ConfigError(f"{path}: stage '{stage}' needs 'share' (a number in (0, 1])")
    if "share" in spec:
        share = check_number(f"{path}.share", spec["share"], low=0, high=1, low_open=True)
    min_units = (check_positive_int(f"{path}.min_units", spec["min_units"])
                 if "min_units" in spec else None)
    max_units = None
    if "max_units" in spec:
        max_units = check_integer(f"{path}.max_units", spec["max_units"], low=min_units or 1,
                                  why="at least min_units, and positive")
    if "advance_if" not in spec:
        raise ConfigError(f"{path}: stage '{stage}' needs 'advance_if' (a gate: one of "
                          f"{', '.join(map(repr, choices(GateName)))})")
    gate = _gate(f"{path}.advance_if", spec["advance_if"], stage)
    rollback = None
    if "rollback_to" in spec:
        if stage not in _SERVED:
            raise ConfigError(f"{path}.rollback_to: only 'canary' and 'ab' stages roll back "
                              f"(a '{stage}' stage serves nobody)")
        check_choice(f"{path}.rollback_to", spec["rollback_to"], RollbackTarget)
        rollback = str(spec["rollback_to"])
    elif stage in _SERVED:
        rollback = "previous"
    return StageSpec(stage, share, min_units, max_units, gate, rollback)


def _order(path: str, stages: Sequence[StageSpec]) -> None:
    if not stages:
        raise invalid(path, [], "a non-empty list of stages ending with {'stage': 'ship'}")
    for i, s in enumerate(stages[:-1]):
        if s.stage == "ship":
            raise ConfigError(f"{path}[{i}].stage ('ship'): 'ship' must be the last stage, "
                              f"but {len(stages) - 1 - i} stage(s) follow it")
    if stages[-1].stage != "ship":
        raise ConfigError(f"{path}[{len(stages) - 1}].stage ({stages[-1].stage!r}): the last "
                          "stage must be 'ship'")
    if len(stages) == 1:
        raise ConfigError(f"{path}: a rollout needs at least one stage before 'ship'")
    last_share: dict[str, float] = {}
    for i, (prev, cur) in enumerate(zip(stages, stages[1:], strict=False), start=1):
        where = f"{path}[{i}].stage ({cur.stage!r})"
        if _RANK[cur.stage] < _RANK[prev.stage]:
            raise ConfigError(f"{where} comes after {prev.stage!r}: stages must be in the "
                              "order shadow, canary, ab, ship")
        if cur.stage == prev.stage == "shadow":
            raise ConfigError(f"{where}: at most one 'shadow' stage")
    for i, s in enumerate(stages):
        if s.stage in _SERVED and s.share is not None:
            before = max(last_share.values(), default=0.0)
            if s.share < before or s.share <= last_share.get(s.stage, 0.0):
                raise ConfigError(f"{path}[{i}].share ({s.share:g}) must be larger than the "
                                  f"share of the stage before ({before:g}): exposure only grows")
            last_share[s.stage] = s.share


@dataclass(frozen=True)
class Rollout:
    """The parsed rollout of every candidate, in the config's order."""

    candidates: tuple[CandidateRollout, ...] = ()

    @classmethod
    def parse(cls, mapping: object, variants: Sequence[str], shadows: Sequence[str], *,
              control: str | None = None, path: str = "rollout") -> Rollout:
        """Validate ``{candidate: [stage, ...]}``; ``None`` is no rollout. A candidate is a
        declared shadow, or a served variant other than ``control`` without a shadow stage."""
        if mapping is None:
            return cls()
        spec = check_mapping(path, mapping, expected="a mapping of candidate to its stages")
        out = []
        for name, stages_value in spec.items():
            cand = check_name(path, name)
            where = f"{path}.{cand}"
            if cand not in shadows and cand not in variants:
                raise ConfigError(f"{where}: unknown candidate {cand!r}; it must be one of the "
                                  f"shadows {sorted(shadows)} or variants {sorted(variants)}")
            if control is not None and cand == control:
                raise ConfigError(f"{where}: the control ({cand!r}) cannot be a candidate")
            items = check_list(where, stages_value, expected="a list of stages")
            stages = tuple(_stage(f"{where}[{i}]", item) for i, item in enumerate(items))
            _order(where, stages)
            if stages[0].stage == "shadow" and cand not in shadows:
                raise ConfigError(f"{where}[0].stage ('shadow'): {cand!r} is a served variant, "
                                  "not a shadow; start at 'canary' or declare it in shadows")
            out.append(CandidateRollout(cand, stages))
        return cls(tuple(out))

    @classmethod
    def parse_shape(cls, mapping: object, path: str = "rollout") -> Rollout | None:
        """The stages of every candidate, without checking the names against variants and
        shadows (RouterConfig does not know them); None stays None."""
        if mapping is None or isinstance(mapping, Rollout):
            return mapping
        spec = check_mapping(path, mapping, expected="a mapping of candidate to its stages")
        names = [str(n) for n in spec]
        return cls.parse(spec, (), names, path=path)

    def reads_primary(self) -> list[str]:
        """``candidate[i]`` of every served stage whose gate reads the primary metric."""
        return [f"{c.candidate}[{i}]" for c in self.candidates
                for i, s in enumerate(c.stages) if s.advance_if is not None
                and s.stage in _SERVED and s.advance_if.name in ("no_worse", "primary_better")]

    def __getitem__(self, candidate: str) -> CandidateRollout:
        for c in self.candidates:
            if c.candidate == candidate:
                return c
        raise KeyError(candidate)

    def __contains__(self, candidate: object) -> bool:
        return any(c.candidate == candidate for c in self.candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    def __repr__(self) -> str:
        return "Rollout(" + ", ".join(repr(c) for c in self.candidates) + ")"

    def to_dict(self) -> dict[str, Any]:
        """``{candidate: [stage, ...]}``, the config's own shape."""
        return {c.candidate: c.to_dict() for c in self.candidates}
