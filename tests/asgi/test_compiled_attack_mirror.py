"""Adversarial tests of the compiled twins' C copies of their objects' attributes
(CoreMirror, config/extensions.py): replaced, patched, deleted and copied attributes, and
objects without a C copy. Cells: memory store; one worker; A/B; 3 variants; user level.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelrouter.asgi.middleware import RoutingMiddleware
from modelrouter.config.extensions import compiled, python_method
from modelrouter.routing.experiment import Experiment
from tests.asgi._attack import call, compiled_call, make_router, python_call, scope_of

BUILT = bool(compiled()) and all(compiled().values())
pytestmark = pytest.mark.skipif(not BUILT, reason="compiled twins not built on this machine")


# -- attribute mirroring (CoreMirror) ---------------------------------------------------------
def test_a_class_patch_of_route_checked_after_construction_is_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled middleware once kept calling the C route after
    ``Experiment.route_checked`` was patched on the class (the Python method calls the patch)."""
    router = make_router()
    original = Experiment.route_checked
    calls: list[Any] = []

    def spy(self: Experiment, unit: str | None, segment: Any = ()) -> Any:
        calls.append(unit)
        return original(self, unit, segment)

    call(router, compiled_call, scope_of([(b"x-user-id", b"u0")]))  # the class is checked
    monkeypatch.setattr(Experiment, "route_checked", spy)
    result = call(router, compiled_call, scope_of([(b"x-user-id", b"u1")]))
    assert calls == ["u1"] and result["decision"][2] == "u1"
    monkeypatch.undo()  # the twin again, then patched again: each change is seen
    call(router, compiled_call, scope_of([(b"x-user-id", b"u2")]))
    assert calls == ["u1"]
    monkeypatch.setattr(Experiment, "route_checked", spy)
    call(router, compiled_call, scope_of([(b"x-user-id", b"u3")]))
    assert calls == ["u1", "u3"]
    monkeypatch.undo()

    class Sub(Experiment):  # a subclass with a route of its own: the middleware calls it
        def route_checked(self, unit: str | None, segment: Any = ()) -> Any:
            calls.append(f"sub-{unit}")
            return original(self, unit, segment)

    router.experiment.__class__ = Sub
    call(router, compiled_call, scope_of([(b"x-user-id", b"u4")]))
    assert calls == ["u1", "u3", "sub-u4"]


def test_a_replaced_expose_unit_is_called_by_the_compiled_route() -> None:
    """The compiled route once called the store's C exposure even after the experiment's
    ``_expose_unit`` was replaced (the Python method calls the replacement)."""
    python_route: Any = python_method(Experiment, "route_checked")
    counts = []
    for route in (Experiment.route_checked, python_route):
        exp = make_router().experiment
        calls: list[Any] = []
        original = exp._expose_unit

        def spy(*args: Any, calls: list[Any] = calls, original: Any = original) -> Any:
            calls.append(args[0])
            return original(*args)

        exp._expose_unit = spy  # type: ignore[method-assign]
        decision, seq = route(exp, "u1")
        assert decision.unit_id == "u1" and seq == 0
        counts.append(calls)
    assert counts[0] == counts[1] == ["u1"]


def test_replaced_attributes_are_seen_at_once() -> None:
    """rotate_secret, a replaced reader, clock and timer: the compiled call uses them."""
    router = make_router(secret="s" * 32)
    old = router._signer
    router.rotate_secret("t" * 32)
    assert router._core.signer is router._signer is not old
    router._read_unit = lambda scope: "from-reader"  # type: ignore[assignment]
    router.experiment.clock = lambda: 123.0
    router._timer = lambda: 5.0
    result = call(router, compiled_call, scope_of([(b"x-user-id", b"u1")]))
    assert result["decision"][2] == "from-reader"
    assert router.experiment.store.dump()[1]["first_seen"].tolist() == [123.0]
    other = make_router().experiment  # another routing state: everything to "c" from now on
    other.configure(weights={"a": 0.0, "b": 0.0, "c": 1.0})
    router.experiment.state = other.state
    router._read_unit = lambda scope: scope["path"]  # type: ignore[assignment]
    variants = {call(router, compiled_call, {**scope_of([]), "path": f"/u{i}"})["decision"][1]
                for i in range(20)}
    assert variants == {"c"}


def test_a_deleted_attribute_leaves_no_stale_copy_in_the_core() -> None:
    """Deleting a mirrored attribute refreshes the C copy too (it kept the deleted object and
    the compiled call went on calling it). Known difference left: the Python method then
    raises AttributeError, the compiled one takes the missing surface for None."""
    router = make_router()
    calls: list[Any] = []

    async def surface(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])

    router.surface = surface
    router._http_prefix = "/p"
    del router.surface
    assert router._core.surface is None
    call(router, compiled_call, scope_of([(b"x-user-id", b"u1")]))
    assert calls == []


def test_a_shallow_copy_has_a_c_copy_of_its_own() -> None:
    """``copy.copy`` of a router or an experiment once shared the original's C copy: an
    attribute set on the copy changed what the original's compiled twin read (its surface,
    its decision-id prefix). Each now has its own, holding the same attribute objects."""
    import copy

    router = make_router()
    twin = copy.copy(router)
    assert twin._core is not router._core and twin.experiment is router.experiment

    async def surface(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the copy's surface answered the original's request")

    twin.surface = surface
    twin._http_prefix = "/"
    assert router._core.surface is None
    assert call(router, compiled_call, scope_of([(b"x-user-id", b"u1")]))["error"] is None
    exp = router.experiment
    other = copy.copy(exp)
    other._prefix = "copy-"
    assert exp._core.prefix == exp._prefix != "copy-"
    assert other.route_checked("u2")[0].decision_id.startswith("copy-")
    assert exp.route_checked("u3")[0].decision_id.startswith(exp._prefix)


def test_the_core_is_read_from_the_instance_dict_again_after_every_change() -> None:
    """The compiled call reads ``mw._core`` from the instance dict through a one-entry cache
    keyed on the dict's version (store/dict_fields.pxd): two routers called in turn each
    count in their own store; a ``_core`` set behind the mirror's back is the one read at the
    next request (as a generic read finds it), a deleted one is AttributeError, a class
    attribute is found as Python finds it."""
    def decisions(router: Any) -> int:
        return int(router.experiment.store.stats()["decisions"])

    a, b = make_router(), make_router()
    for i in range(6):
        router = (a, b)[i % 2]
        assert call(router, compiled_call, scope_of([(b"x-user-id", b"u%d" % i)]))["error"] is None
    assert decisions(a) == decisions(b) == 3
    object.__setattr__(a, "_core", b._core)  # (not through RoutingMiddleware.__setattr__)
    assert call(a, compiled_call, scope_of([(b"x-user-id", b"u9")]))["error"] is None
    assert decisions(a) == 3 and decisions(b) == 4
    core = a.__dict__.pop("_core")
    assert call(a, compiled_call, scope_of([(b"x-user-id", b"u9")]))["error"] == "AttributeError"
    type(a)._core = core  # a class attribute: found by the generic read
    try:
        assert call(a, compiled_call, scope_of([(b"x-user-id", b"u9")]))["error"] is None
        assert decisions(b) == 5
    finally:
        del type(a)._core


def test_objects_whose_c_copy_is_missing_raise_instead_of_crashing() -> None:
    """Each once crashed the process (a C field read through None): a middleware whose
    ``__init__`` did not run (a subclass that skips it; the Python method raises
    AttributeError), a Flight (the send wrapper) made outside the middleware's call, and a
    UnitPath whose lock is None (the Python twin's ``with None`` raises TypeError)."""
    from array import array

    from modelrouter.asgi import middleware_c  # type: ignore[attr-defined]
    from modelrouter.store import hot_c  # type: ignore[attr-defined]

    class Skips(RoutingMiddleware):
        def __init__(self) -> None:  # never calls RoutingMiddleware.__init__
            pass

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    for via in (compiled_call, python_call):
        with pytest.raises(AttributeError):
            asyncio.run(via(Skips(), scope_of([]), receive, send))
    with pytest.raises(TypeError):
        middleware_c.Flight()({"type": "http.response.start", "status": 200})
    bare = middleware_c.Flight()  # nothing to drive: refused like an awaited coroutine
    with pytest.raises(RuntimeError, match="cannot reuse already awaited"):
        bare.send(None)
    with pytest.raises(ValueError, match="thrown"):
        bare.throw(ValueError("thrown"))
    bare.close()
    path = hot_c.UnitPath(None, 4, array("q"), array("d"), array("q"), [0, 0])
    store = type("Store", (), {"_path": path, "unit_level": True})()
    with pytest.raises(TypeError):
        hot_c.expose_unit(store, "u", lambda unit: 0.5, None, (), 0.0)


def test_a_value_a_c_field_cannot_hold_is_refused_and_changes_nothing() -> None:
    """Setting ``_target_of`` to a mappingproxy (a C dict field) or the reader's bound past a
    C integer once set the attribute and then raised from the core's refresh: the object and
    its C copy disagreed. Now the assignment is refused, naming the attribute, and both keep
    the old value. (The Python methods would take these values: a known difference.)"""
    import types

    router = make_router()
    before = router._target_of
    with pytest.raises(TypeError, match="_target_of"):
        router._target_of = types.MappingProxyType(dict(before))  # type: ignore[assignment]
    assert router._target_of is before and router._core.target_of is before

    class Reader:
        fast_header = b"x-user-id"
        max_length = 2**70

        def __call__(self, scope: Any) -> str:
            return "r"

    reader = router._read_unit
    with pytest.raises(OverflowError, match="_read_unit"):
        router._read_unit = Reader()  # type: ignore[assignment]
    assert router._read_unit is reader and router._core.read_unit is reader
    del router._target_of  # then set anew and refused: removed again
    with pytest.raises(TypeError, match="_target_of"):
        router._target_of = types.MappingProxyType(dict(before))  # type: ignore[assignment]
    assert "_target_of" not in router.__dict__ and router._core.target_of is None


@pytest.mark.parametrize("prefix", ["", "p-", "é-", "\U0001f600-", "x" * 300])
def test_a_decision_id_is_the_prefix_and_the_hex_number_for_any_prefix(prefix: str) -> None:
    """The compiled twin writes an ASCII prefix and the hex digits into one new string (a
    non-ASCII prefix is concatenated): the same ids as the Python method, every number of
    hex digits (the decision numbers cross 0xf, 0xff, ... as the 4,200 requests go)."""
    fast, slow = make_router(), make_router()
    python_route: Any = python_method(Experiment, "route_checked")
    fast.experiment._prefix = slow.experiment._prefix = prefix
    ids = []
    for i in range(4_200):
        a, _ = fast.experiment.route_checked(f"u{i % 300}")
        b, _ = python_route(slow.experiment, f"u{i % 300}")
        ids.append(a.decision_id)
        assert a.decision_id == b.decision_id and type(a.decision_id) is str
        assert a == b
    assert ids[0] == f"{prefix}0" and ids[-1] == f"{prefix}{4_199:x}"
