"""The validators of modelrouter/config/_checks.py: each accepts its edges, and rejects with a
message that names the path and repeats the bad value (bools, NaN, inf, huge ints, strings)."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import pytest

from modelrouter.config._checks import (
    MAX_INT,
    check_bool,
    check_callable,
    check_choice,
    check_integer,
    check_keys,
    check_list,
    check_mapping,
    check_mapping_of,
    check_name,
    check_number,
    check_open_unit,
    check_optional,
    check_path_prefixes,
    check_positive,
    check_positive_int,
    check_secret,
    check_text,
    check_url_prefix,
    choices,
    invalid,
    show,
)
from modelrouter.exceptions import ConfigError

Colour = Literal["red", "green"]
Side = Literal[1, 2]


def _fails(message: str) -> Any:
    return pytest.raises(ConfigError, match="^" + re.escape(message) + "$")


# -- messages --------------------------------------------------------------------------------
def test_show_survives_values_without_a_usable_repr() -> None:
    assert show("a") == "'a'"
    assert show(10**5000) == f"<int of {(10**5000).bit_length()} bits>"  # no str() over 4300
    long = show("x" * 1000)
    assert len(long) == 200 and long.endswith("...")

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert show(Broken()) == "<Broken object>"


def test_invalid_is_the_one_message_shape() -> None:
    error = invalid("a.b", [1], "a list of names")
    assert isinstance(error, ConfigError)
    assert str(error) == "a.b ([1]) must be a list of names"


# -- choices and names ----------------------------------------------------------------------
def test_choices_are_read_from_the_literal_alias() -> None:
    assert choices(Colour) == ("red", "green")
    with pytest.raises(TypeError, match="not a Literal alias"):
        choices(str)


@pytest.mark.parametrize("value", ["red", "green"])
def test_choice_accepts_every_value_of_the_alias(value: str) -> None:
    check_choice("colour", value, Colour)


@pytest.mark.parametrize("value", ["blue", "Red", "", None, 3, ["red"], b"red"])
def test_choice_rejects_others_and_lists_the_choices(value: object) -> None:
    with _fails(f"colour ({value!r}) must be one of 'red', 'green'"):
        check_choice("colour", value, Colour)


def test_integer_choices_refuse_bools_and_floats() -> None:
    check_choice("sided", 2, Side)
    for value in (True, 1.0, 3):
        with _fails(f"sided ({value!r}) must be 1 or 2"):
            check_choice("sided", value, Side, expected="1 or 2")


def test_name_edges() -> None:
    assert check_name("metrics", "a") == "a"
    assert check_name("metrics", "A-z_0.9" + "x" * 57) == "A-z_0.9" + "x" * 57  # 64 chars
    requirement = ("must be a non-empty name of at most 64 characters from letters, digits, "
                   "'_', '-' and '.'")
    for bad in ("", "x" * 65, "a b", "é", 3, None, True):
        with _fails(f"metrics ({bad!r}) {requirement}"):
            check_name("metrics", bad)


def test_unknown_keys_name_the_first_and_list_the_known() -> None:
    check_keys("plan", {"alpha": 1}, frozenset({"alpha", "power"}))
    with _fails("plan.lookz: unknown plan field; known plan fields are ['alpha', 'power']"):
        check_keys("plan", {"lookz": 1, "alpha": 1, "zeta": 2}, frozenset({"alpha", "power"}),
                   what="plan field")
    with _fails("salty: unknown config field; known config fields are ['salt']"):
        check_keys("", {"salty": 1}, frozenset({"salt"}), what="config field")
    with _fails("g.1: unknown key; known keys are ['a']"):  # mixed key types still sort
        check_keys("g", {1: 0, "b": 0}, frozenset({"a"}), what="key")


# -- scalars ----------------------------------------------------------------------------------
def test_bool() -> None:
    assert check_bool("rollback", False) is False
    for bad in (0, 1, "yes", None):
        with _fails(f"rollback ({bad!r}) must be a bool"):
            check_bool("rollback", bad)


@pytest.mark.parametrize("value", [True, False, "1", None, [1], math.nan, math.inf, -math.inf,
                                   10**400])
def test_number_refuses_non_numbers_non_finite_and_huge(value: object) -> None:
    with _fails(f"x ({show(value)}) must be a finite number"):
        check_number("x", value)


def test_number_accepts_ints_and_floats_as_float() -> None:
    assert check_number("x", 3) == 3.0 and isinstance(check_number("x", 3), float)
    assert check_number("x", -1e308) == -1e308
    assert check_number("x", 2**80) == float(2**80)  # big, but a float holds it


@pytest.mark.parametrize(("bounds", "inside", "outside", "requirement"), [
    ({"low": 0}, [0, 5e-324, 1e308], [-5e-324, -1], ">= 0"),
    ({"low": 0, "low_open": True}, [5e-324, 1], [0, -0.0, -1], "> 0"),
    ({"high": 5}, [5, -1e308], [5.000001], "<= 5"),
    ({"high": 5, "high_open": True}, [4.999], [5], "< 5"),
    ({"low": 0, "high": 0.5}, [0, 0.5, 0.25], [-0.1, 0.6], "in [0, 0.5]"),
    ({"low": 0, "high": 1, "high_open": True}, [0, 0.999], [1, 1.0], "in [0, 1)"),
    ({"low": 0, "high": 1, "low_open": True, "high_open": True}, [1e-9, 1 - 1e-9], [0, 1],
     "in (0, 1)"),
])
def test_number_bounds(bounds: dict[str, Any], inside: list[Any], outside: list[Any],
                       requirement: str) -> None:
    for value in inside:
        assert check_number("x", value, **bounds) == value
    for value in outside:
        with _fails(f"x ({value!r}) must be {requirement}"):
            check_number("x", value, **bounds)


def test_number_expected_replaces_and_why_explains() -> None:
    expected = "a number in (0, 1), e.g. 0.95"
    for bad in (True, 1.5, "0.9", math.nan):
        with _fails(f"q ({bad!r}) must be {expected}"):
            check_number("q", bad, low=0, high=1, low_open=True, high_open=True,
                         expected=expected)
    with _fails("m (0) must be > 0: the size of the change"):
        check_number("m", 0, low=0, low_open=True, why="the size of the change")
    with _fails("m ('x') must be a finite number"):  # why is about the range only
        check_number("m", "x", low=0, low_open=True, why="the size of the change")


def test_integer_refuses_bools_floats_strings_and_more_than_64_bits() -> None:
    assert check_integer("n", MAX_INT) == MAX_INT
    assert check_integer("n", -MAX_INT) == -MAX_INT
    for bad in (True, False, 1.0, "1", None, math.nan):
        with _fails(f"n ({bad!r}) must be an integer"):
            check_integer("n", bad)
    for huge in (MAX_INT + 1, -MAX_INT - 1, 10**400):
        with _fails(f"n ({show(huge)}) must be a 64-bit integer"):
            check_integer("n", huge)


def test_integer_bounds_and_expected() -> None:
    assert check_integer("n", 1, low=1) == 1
    with _fails("n (0) must be >= 1"):
        check_integer("n", 0, low=1)
    with _fails("n (0) must be > 0"):
        check_integer("n", 0, low=0, low_open=True)
    assert check_integer("looks", 50, low=1, high=50) == 50
    for bad in (0, 51, 10.5, True):
        with _fails(f"looks ({bad!r}) must be an integer from 1 to 50"):
            check_integer("looks", bad, low=1, high=50, expected="an integer from 1 to 50")
    with _fails("cap (1) must be >= 2: one value is 'other'"):
        check_integer("cap", 1, low=2, why="one value is 'other'")


def test_positive_and_open_unit_edges() -> None:
    assert check_positive("x", 5e-324) == 5e-324
    assert check_positive_int("n", 1) == 1
    assert check_open_unit("p", 1e-12) == 1e-12 and check_open_unit("p", 0.999999) == 0.999999
    for bad in (0, -1):
        with _fails(f"x ({bad!r}) must be > 0"):
            check_positive("x", bad)
        with _fails(f"n ({bad!r}) must be > 0"):
            check_positive_int("n", bad)
    for outside in (0, 1, 1.5, -0.1):
        with _fails(f"p ({outside!r}) must be in (0, 1)"):
            check_open_unit("p", outside)
    with _fails("p (True) must be a finite number"):
        check_open_unit("p", True)


def test_optional_passes_none_and_says_so() -> None:
    assert check_optional(check_positive, "s", None) is None
    assert check_optional(check_positive, "s", 2) == 2.0
    with _fails("s (0) must be > 0 or None"):
        check_optional(check_positive, "s", 0)
    with _fails("s ('x') must be a finite number or None"):
        check_optional(check_positive, "s", "x")
    with _fails("h ('') must be a non-empty string or None"):
        check_optional(check_text, "h", "")
    with _fails("n (0) must be >= 1 or None"):
        check_optional(check_integer, "n", 0, low=1)


def test_text() -> None:
    assert check_text("h", "x") == "x"
    assert check_text("salt", "", allow_empty=True, expected="a string") == ""
    for bad in ("", "   ", 3, None, b"x"):
        with _fails(f"h ({bad!r}) must be a non-empty string"):
            check_text("h", bad)
    with _fails("salt (3) must be a string"):
        check_text("salt", 3, allow_empty=True, expected="a string")


def test_callable() -> None:
    assert check_callable("f", len) is len
    with _fails("f (3) must be a callable taking the scope"):
        check_callable("f", 3, expected="a callable taking the scope")


def test_secret_message_never_repeats_the_value() -> None:
    assert check_secret("secret", "s" * 16, source="$S") == "s" * 16
    for bad in ("s" * 15, " " + "s" * 20, "s" * 20 + "\n", "s" * 10 + "\x00" + "s" * 10, 12345):
        with pytest.raises(ConfigError) as info:
            check_secret("secret", bad, source="the argument or $S")
        assert str(info.value).startswith("secret (from the argument or $S) must be a string of "
                                          "at least 16 printable characters")
        assert str(bad).strip() not in str(info.value)


def test_url_prefix() -> None:
    assert check_url_prefix("http_prefix", "/_mr/v1.2") == "/_mr/v1.2"
    for bad in ("/", "/a/", "a", "/a b", "/a?x", 3):
        with pytest.raises(ConfigError, match=re.escape(f"http_prefix ({bad!r}) must be a path "
                                                        "that starts with '/'")):
            check_url_prefix("http_prefix", bad)


# -- collections ------------------------------------------------------------------------------
def test_list_is_not_a_string() -> None:
    assert check_list("s", ["a", "b"], expected="a list") == ("a", "b")
    assert check_list("s", (), expected="a list") == ()
    for bad in ("ab", b"ab", {"a"}, 3, None):
        with _fails(f"s ({bad!r}) must be a list of dimensions"):
            check_list("s", bad, expected="a list of dimensions")


def test_path_prefixes() -> None:
    assert check_path_prefixes("paths", ["/a", "/"]) == ("/a", "/")
    for bad in ("/a", ["a"], ["/a", 3], 3):
        with _fails(f"paths ({bad!r}) must be a list of path prefixes starting with '/'"):
            check_path_prefixes("paths", bad)
    with _fails("paths ('/a') must be a list of path prefixes starting with '/' or None"):
        check_optional(check_path_prefixes, "paths", "/a")


def test_mapping() -> None:
    assert check_mapping("m", {}, expected="a mapping") == {}
    with _fails("m ({}) must be a non-empty mapping"):
        check_mapping("m", {}, expected="a non-empty mapping", non_empty=True)
    for bad in ([("a", 1)], "a", None, 3):
        with _fails(f"m ({bad!r}) must be a mapping of name to spec"):
            check_mapping("m", bad, expected="a mapping of name to spec")


def test_mapping_of_checks_keys_then_values_with_their_paths() -> None:
    def weights(value: object) -> dict[str, float]:
        return check_mapping_of("weights", value, check_number, low=0, non_empty=True,
                                expected="a non-empty mapping of variant to share")

    out = weights({"a": 1, "b": 0})
    assert out == {"a": 1.0, "b": 0.0} and all(type(v) is float for v in out.values())
    with _fails("weights.b (-0.5) must be >= 0"):
        weights({"a": 1.5, "b": -0.5})
    with _fails("weights.a (nan) must be a finite number"):
        weights({"a": math.nan})
    with _fails("weights.a (True) must be a finite number"):
        weights({"a": True})
    with _fails("weights ('a b') must be a non-empty name of at most 64 characters from "
                "letters, digits, '_', '-' and '.'"):
        weights({"a b": 1})
    with _fails("weights ({}) must be a non-empty mapping of variant to share"):
        weights({})

    def known(path: str, key: object) -> str:
        if key != "ok":
            raise ConfigError(f"{path}.{key}: not known")
        return "ok"

    with _fails("costs.no: not known"):
        check_mapping_of("costs", {"ok": 1, "no": 1}, check_number, expected="costs",
                         keys=known)
