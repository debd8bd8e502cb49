"""The pure parts of the server benchmark's fixed-offered-load mode (benchmarks/_fixed_rate.py):
what ``--rate`` accepts and refuses, the schedule's spacing written into wrk's script, the rate
``--rate auto`` picks, and when a round is flagged. Expected values are worked out by hand
(1000 / rate ms between slots; 60% of the slowest rate, down to a multiple of 100)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _fixed_rate import (  # noqa: E402 - benchmarks/ is not a package
    auto_rate,
    interval_ms,
    off_rate,
    paced_script,
    parse_rates,
)


def test_rates_are_parsed_and_bad_ones_refused_by_name() -> None:
    assert parse_rates("auto") is None and parse_rates(" auto ") is None
    assert parse_rates("5000,10000") == [5000.0, 10000.0]
    assert parse_rates("2.5e3") == [2500.0]
    for bad, named in [("0", "'0'"), ("-5", "'-5'"), ("nan", "'nan'"), ("inf", "'inf'"),
                       ("1e300", "'1e300'"), ("x", "'x'"), ("5000,", "''"),
                       ("5,5", "repeats")]:
        with pytest.raises(ValueError, match=named):
            parse_rates(bad)


def test_the_schedule_spacing_is_written_into_the_script() -> None:
    assert interval_ms(10_000) == 0.1 and interval_ms(2_000) == 0.5 and interval_ms(1) == 1000
    script = paced_script("request = function() end\n", 4_000)
    assert "local interval = 0.25\n" in script and "now - 100.0" in script
    assert "INTERVAL_MS" not in script and "CATCH_UP" not in script
    assert script.startswith("request = function() end\n")


def test_auto_picks_sixty_percent_of_the_slowest_app_in_hundreds() -> None:
    assert auto_rate([11_085.0, 12_900.0]) == 6_600.0  # 0.6 * 11,085 = 6,651
    assert auto_rate([99.0]) == 100.0  # never below 100 req/s
    assert auto_rate([20_000.0], fraction=0.5) == 10_000.0
    for bad in ([0.0], [float("nan"), 1_000.0], [-1.0]):
        with pytest.raises(ValueError, match="saturation probe"):
            auto_rate(bad)


def test_a_round_further_than_two_percent_from_the_offer_is_flagged() -> None:
    assert not off_rate(10_000, 9_800) and not off_rate(10_000, 10_200)
    assert off_rate(10_000, 9_799) and off_rate(10_000, 10_201)
    assert off_rate(10_000, float("nan"))  # no rate measured: flagged
