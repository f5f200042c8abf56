from datetime import datetime

import pytest

celery = pytest.importorskip("celery")

from keyleash.celery import current_vault_key, vault_key, vault_keys, with_vault_key  # noqa: E402


def _parse(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.fixture()
def celery_app():
    app = celery.Celery("keyleash-tests", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    return app


def test_task_issues_a_30_minute_key_and_revokes_it(gateway, client, celery_app):
    @celery_app.task
    @with_vault_key(client, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=50, label=lambda order: f"celery-order-{order}")
    def charge(order):
        key = current_vault_key()
        resp = client.proxy(key, "POST", "/stripe/v1/payment_intents", json={"amount": 1200, "currency": "usd", "metadata": {"order": order}})
        return {"key_id": key.id, "pi": resp.json()["id"], "ttl": (_parse(key["expires_at"]) - _parse(key["created_at"])).total_seconds()}

    out = charge.delay("42").get()
    assert out["pi"].startswith("pi_") and out["ttl"] == 30 * 60
    k = gateway.key(out["key_id"])
    assert k["status"] == "revoked" and k["label"] == "celery-order-42" and k["spend_today_usd"] == 12
    assert gateway.stripe_requests()[-1]["authorization"] == f"Bearer {gateway.stripe_test_secret}"
    assert current_vault_key() is None


def test_task_failure_still_revokes(gateway, client, celery_app):
    seen = {}

    @celery_app.task
    @with_vault_key(client, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=5, inject="vault_key")
    def failing(vault_key=None):
        seen["id"] = vault_key.id
        raise RuntimeError("task failed midway")

    with pytest.raises(RuntimeError, match="task failed midway"):
        failing.delay().get()
    assert gateway.key(seen["id"])["status"] == "revoked"


def test_context_manager(gateway, client):
    with pytest.raises(ValueError):
        with vault_key(client, "stripe", ["/v1/payment_intents"], daily_usd_cap=5, expires_in="30m") as key:
            assert current_vault_key("stripe").id == key.id
            kid = key.id
            raise ValueError("boom")
    assert gateway.key(kid)["status"] == "revoked"


def test_several_vendors_in_a_task(gateway, client):
    with vault_keys(client, {"stripe": {"allowed_endpoints": ["/v1/payment_intents"]}, "refunds": {"vendor": "stripe", "allowed_endpoints": ["POST /v1/refunds"]}}) as keys:
        assert current_vault_key("refunds").id == keys["refunds"].id
        ids = [k.id for k in keys.values()]
    assert [gateway.key(i)["status"] for i in ids] == ["revoked", "revoked"]
