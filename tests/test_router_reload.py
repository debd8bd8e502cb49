"""ModelRouter.reload: mode and weights switch, secrets rotate (the old ones stop working at
once, over the real HTTP surface), everything else is refused, and a refused reload changes
nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelrouter import ConfigError, ModelRouter, RouterConfig
from modelrouter.routing.tokens import TOKEN_HEADER
from modelrouter.testing import ASGIClient, Response
from modelrouter.web.surface import COOKIE_NAME
from tests.conftest import make_app

OLD_SECRET, NEW_SECRET = "old-secret-" + "s" * 21, "new-secret-" + "t" * 21
OLD_ADMIN, NEW_ADMIN = "old-admin-token-" + "a" * 16, "new-admin-token-" + "b" * 16
VARIANTS = {"control": lambda x: x, "treatment": lambda x: 2 * x}
BASE = 'experiment = "rot"\nsalt = "r"\nmetrics = { click = "binary" }\n'


def router(**kw: Any) -> ModelRouter:
    kw = {"secret": OLD_SECRET, "admin_token": OLD_ADMIN, **kw}
    return ModelRouter(make_app(), VARIANTS, RouterConfig(
        experiment="rot", salt="r", metrics={"click": "binary"}, **kw))


def toml(path: Path, **fields: str | None) -> str:
    lines = [f'{k} = "{v}"' for k, v in fields.items() if v is not None]
    path.write_text("[router]\n" + BASE + "\n".join(lines) + "\n")
    return str(path)


def admin_get(client: ASGIClient, *, bearer: str | None = None,
              cookie: str | None = None) -> Response:
    headers = {}
    if bearer is not None:
        headers["authorization"] = f"Bearer {bearer}"
    if cookie is not None:
        headers["cookie"] = f"{COOKIE_NAME}={cookie}"
    return client.run("GET", "/_modelrouter/config", headers=headers)


def login(client: ASGIClient, token: str) -> str:
    r = client.run("POST", "/_modelrouter/dashboard", body=f"token={token}".encode(),
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status == 303
    cookie = r.header("set-cookie")
    assert cookie is not None
    return cookie.split(";")[0].split("=", 1)[1]


def routed_token(client: ASGIClient, unit: str) -> str:
    r = client.run("GET", "/predict", headers={"x-user-id": unit})
    token = r.header(TOKEN_HEADER)
    assert r.status == 200 and token is not None
    return token


def feedback(client: ASGIClient, token: str) -> Response:
    return client.run("POST", "/_modelrouter/feedback",
                      json={"token": token, "metric": "click", "value": 1})


def test_a_rotated_admin_token_replaces_the_old_one_at_once(tmp_path: Path) -> None:
    r = router()
    client = ASGIClient(r)
    old_cookie = login(client, OLD_ADMIN)
    assert admin_get(client, bearer=OLD_ADMIN).status == 200
    assert admin_get(client, cookie=old_cookie).status == 200
    r.reload(toml(tmp_path / "r.toml", secret=OLD_SECRET, admin_token=NEW_ADMIN))
    assert admin_get(client, bearer=OLD_ADMIN).status == 403  # the old token no longer works
    assert admin_get(client, cookie=old_cookie).status == 403  # nor its dashboard session
    assert admin_get(client, bearer=NEW_ADMIN).status == 200
    assert admin_get(client, cookie=login(client, NEW_ADMIN)).status == 200
    assert r.config.admin_token == NEW_ADMIN and r.experiment.config is r.config
    # reloading the same file again changes nothing
    r.reload(str(tmp_path / "r.toml"))
    assert admin_get(client, bearer=NEW_ADMIN).status == 200


def test_a_rotated_secret_signs_and_verifies_from_then_on(tmp_path: Path) -> None:
    r = router()
    client = ASGIClient(r)
    before = routed_token(client, "alice")
    r.reload(toml(tmp_path / "r.toml", secret=NEW_SECRET, admin_token=OLD_ADMIN))
    refused = feedback(client, before)  # signed with the old secret: refused, as a forgery
    assert refused.status == 403 and "signature does not verify" in refused.json()["error"]
    after = routed_token(client, "alice")
    assert feedback(client, after).json()["recorded"] is True
    assert r.record_token(routed_token(client, "bob"), "click", 1) is True
    snap = r.experiment.store.snapshot()
    assert snap.units is not None and snap.units.x["click"].sum() == 2.0
    assert r.config.secret == NEW_SECRET


def test_rotation_and_a_refused_switch_are_all_or_nothing(tmp_path: Path) -> None:
    """A file rotating the admin token but asking for weights of an unknown variant is
    refused whole: the old token keeps working, the weights stay."""
    r = router()
    client = ASGIClient(r)
    path = tmp_path / "r.toml"
    path.write_text("[router]\n" + BASE + f'secret = "{NEW_SECRET}"\n'
                    f'admin_token = "{NEW_ADMIN}"\n'
                    "weights = { control = 0.5, nope = 0.5 }\n")
    with pytest.raises(ConfigError, match="nope"):
        r.reload(str(path))
    assert admin_get(client, bearer=OLD_ADMIN).status == 200
    assert admin_get(client, bearer=NEW_ADMIN).status == 403
    assert feedback(client, routed_token(client, "carol")).json()["recorded"] is True
    assert r.config.secret == OLD_SECRET and r.experiment.allocation.epoch == 0


@pytest.mark.parametrize(("running", "file", "message"), [
    ({"admin_token": None}, {"secret": OLD_SECRET, "admin_token": NEW_ADMIN},
     "admin_token is set but the running config has none; adding or removing it turns "
     "endpoints on or off: restart to apply it"),
    ({}, {"secret": None, "admin_token": OLD_ADMIN},
     "secret is not set but the running config has one"),
])
def test_adding_or_removing_a_secret_is_refused_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: dict[str, Any],
        file: dict[str, str | None], message: str) -> None:
    monkeypatch.delenv("MODELROUTER_SECRET", raising=False)
    monkeypatch.delenv("MODELROUTER_ADMIN_TOKEN", raising=False)
    r = router(**running)
    before = r.config
    with pytest.raises(ConfigError, match=message):
        r.reload(toml(tmp_path / "r.toml", **file))
    assert r.config is before


def test_a_secret_from_the_environment_is_rotated_through_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file without secrets takes them from the environment, as at startup: rotating the
    environment variable and reloading rotates the secret."""
    monkeypatch.setenv("MODELROUTER_SECRET", OLD_SECRET)
    monkeypatch.delenv("MODELROUTER_ADMIN_TOKEN", raising=False)
    r = ModelRouter(make_app(), VARIANTS, RouterConfig(experiment="rot", salt="r",
                                                       metrics={"click": "binary"}))
    client = ASGIClient(r)
    before = routed_token(client, "alice")
    path = toml(tmp_path / "r.toml")
    r.reload(path)  # same environment: nothing changes
    assert feedback(client, before).json()["recorded"] is True
    monkeypatch.setenv("MODELROUTER_SECRET", NEW_SECRET)
    r.reload(path)
    assert feedback(client, routed_token(client, "bob")).json()["recorded"] is True
    assert feedback(client, before).status == 403  # signed with the old secret
    assert feedback(client, routed_token(client, "alice")).json()["recorded"] is True


def test_other_fields_are_still_refused(tmp_path: Path) -> None:
    r = router()
    path = tmp_path / "r.toml"
    path.write_text("[router]\n" + BASE.replace('"r"', '"other"') + f'secret = "{OLD_SECRET}"\n'
                    f'admin_token = "{OLD_ADMIN}"\n')
    with pytest.raises(ConfigError, match="salt differs from the running config; only mode, "
                                          "weights, secret and admin_token can change"):
        r.reload(str(path))
