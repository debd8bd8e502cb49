"""Config edge cases: overflowing weights, and secrets redacted from store URLs."""

from __future__ import annotations

import pytest

from modelrouter import ConfigError, RouterConfig
from modelrouter.config.store import redact_url


def test_weights_whose_sum_overflows_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"weights must sum to 1, got inf"):
        RouterConfig(weights={"a": 1e308, "b": 1e308})


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://u:s3cret@h/0?password=s3cret&db=1", "redis://u:***@h/0?password=***&db=1"),
    ("redis://h/0?Password=s3cret", "redis://h/0?Password=***"),
    ("rediss://h/0?ssl_cert_reqs=none", "rediss://h/0?ssl_cert_reqs=none"),
])
def test_store_url_passwords_never_shown(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(url)
