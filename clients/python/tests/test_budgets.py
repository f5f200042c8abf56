"""Budgets against the real gateway: CRUD, a user budget shared by two keys, freeze, kill switch."""
import re

import pytest
from flask import jsonify

from keyleash import (
    BudgetExistsError,
    BudgetFrozenError,
    BudgetInUseError,
    BudgetNotFoundError,
    CapExhaustedError,
    InvalidRequestError,
    KeyRevokedError,
    is_cap_exhausted,
)

SPEC = dict(vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=80, expires_in="5m")


def charge(client, key, amount):
    return client.proxy(key, "POST", "/stripe/v1/payment_intents", json={"amount": amount, "currency": "usd", "customer": "cus_123"})


def test_budget_crud(client):
    b = client.create_budget("team:py-crud", 500, "month", metadata={"team": "crud"}, rate_limit={"requests": 20, "per": "second"})
    assert b["object"] == "budget" and b["id"] == "team:py-crud" and b["limit_usd"] == 500 and b["period"] == "month"
    assert b["frozen"] is False and b["spend_usd"] == 0 and b["remaining_usd"] == 500
    assert b["rate_limit"] == {"requests": 20, "per": "second"} and re.fullmatch(r"\d{4}-\d{2}", b["window"])
    with pytest.raises(BudgetExistsError) as e:
        client.create_budget("team:py-crud", 1, "day")
    assert e.value.status == 409 and e.value.code == "budget_exists"
    with pytest.raises(InvalidRequestError):
        client.create_budget("bad id", 1, "day")
    assert client.get_budget("team:py-crud")["metadata"] == {"team": "crud"}
    with pytest.raises(BudgetNotFoundError) as e:
        client.get_budget("team:py-nope")
    assert e.value.status == 404
    with pytest.raises(BudgetNotFoundError):
        client.delete_budget("team:py-nope")

    up = client.update_budget("team:py-crud", limit_usd="250.5", rate_limit=None, metadata={"team": "crud2"})
    assert up["limit_usd"] == 250.5 and up["rate_limit"] is None and up["metadata"] == {"team": "crud2"}
    assert client.update_budget("team:py-crud", frozen=True)["rate_limit"] is None  # untouched when not given

    for i in range(3):
        client.create_budget(f"py-page:{i}", 1, "total")
    page = client.list_budgets(limit=2)
    assert page["object"] == "list" and len(page["data"]) == 2 and page["has_more"] is True
    ids = {b["id"] for b in client.iter_budgets(limit=2)}
    assert {"team:py-crud", "py-page:0", "py-page:1", "py-page:2"} <= ids
    assert client.delete_budget("py-page:0") == {"object": "budget", "id": "py-page:0", "deleted": True}


def test_user_budget_shared_by_two_keys(gateway, client):
    budget = client.create_budget("user:py-u42", 100, "day")
    assert budget["remaining_usd"] == 100

    a = client.issue_key(**SPEC, label="py-budget-a", budgets=["user:py-u42"])
    b = client.issue_key(**SPEC, label="py-budget-b", budgets=["user:py-u42"])
    assert a["budgets"] == ["user:py-u42"] and client.get_key(b.id)["budgets"] == ["user:py-u42"]

    assert charge(client, a, 6000).status_code == 200  # $60 of a's $80, of the budget's $100
    assert charge(client, b, 3000).status_code == 200  # $30 of b's $80; the budget is at $90
    before = len(gateway.stripe_requests())
    # $20 more fits b's own cap ($50 of $80) but not the budget ($110 of $100).
    with pytest.raises(CapExhaustedError) as e:
        charge(client, b, 2000)
    err = e.value
    assert is_cap_exhausted(err) and err.status == 429
    assert err.limit["kind"] == "budget" and err.limit["id"] == "user:py-u42" and err.limit["period"] == "day"
    assert err.budget_id == "user:py-u42" and err.remaining_usd == 10
    assert len(gateway.stripe_requests()) == before  # nothing reached Stripe
    assert client.get_key(b.id)["spend_today_usd"] == 30

    spent = client.get_budget("user:py-u42")
    assert spent["spend_usd"] == 90 and spent["remaining_usd"] == 10
    today = spent["window"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", today)
    assert client.budget_spend("user:py-u42", window=today)["spend_usd"] == 90
    old = client.budget_spend("user:py-u42", window="2020-01-01")
    assert old["window"] == "2020-01-01" and old["spend_usd"] == 0
    assert client.budget_spend("user:py-u42")["spend_usd"] == 90
    with pytest.raises(InvalidRequestError) as e:
        client.budget_spend("user:py-u42", window="2020-01")
    assert e.value.param == "window"

    # Frozen: no key can be issued against it, and the attached keys' calls are refused.
    assert client.freeze_budget("user:py-u42")["frozen"] is True
    with pytest.raises(BudgetFrozenError) as e:
        client.issue_key(**SPEC, budgets=["user:py-u42"])
    assert e.value.status == 403 and e.value.budget_id == "user:py-u42"
    with pytest.raises(BudgetFrozenError):
        charge(client, a, 100)
    assert client.unfreeze_budget("user:py-u42")["frozen"] is False
    assert charge(client, a, 500).status_code == 200

    # While keys are attached it cannot be deleted; the kill switch by budget revokes both.
    with pytest.raises(BudgetInUseError) as e:
        client.delete_budget("user:py-u42")
    assert e.value.status == 409
    other = client.issue_key(**SPEC, label="py-budget-other")
    dry = client.revoke_keys(budget="user:py-u42", dry_run=True)
    assert dry["matched"] == 2 and dry["revoked"] == 0
    res = client.revoke_keys(budget="user:py-u42")
    assert res["matched"] == 2 and res["revoked"] == 2
    assert [client.get_key(k.id)["status"] for k in (a, b, other)] == ["revoked", "revoked", "active"]
    with pytest.raises(KeyRevokedError):
        charge(client, a, 100)

    assert client.delete_budget("user:py-u42") == {"object": "budget", "id": "user:py-u42", "deleted": True}
    with pytest.raises(BudgetNotFoundError):
        client.get_budget("user:py-u42")


def test_flask_budgets_per_request(gateway, client):
    from flask import Flask, g

    from keyleash.flask import KeyleashFlask, proxy_session

    client.create_budget("user:py-flask", 1, "total")
    app = Flask(__name__)
    KeyleashFlask(app, client=client, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=100,
                  budgets=lambda req: [f"user:{req.headers['X-User']}"], cap_exhausted_status=402)

    @app.post("/charge")
    def charge_view():
        app.config["SEEN"] = (g.vault_key_id, client.get_key(g.vault_key_id)["budgets"])
        return jsonify(proxy_session().post("/stripe/v1/payment_intents", json={"amount": 5000, "currency": "usd"}).json())

    with app.test_client() as c:
        r = c.post("/charge", headers={"X-User": "py-flask"})
    assert r.status_code == 402  # the $1 budget refuses the $50 charge; the key's $100 cap would not
    key_id, seen = app.config["SEEN"]
    assert seen == ["user:py-flask"] and gateway.key(key_id)["status"] == "revoked"
    assert client.delete_budget("user:py-flask")["deleted"] is True


def test_celery_budgets(gateway, client):
    from keyleash.celery import current_vault_key, vault_key, with_vault_key

    client.create_budget("user:py-celery", 1, "total")

    @with_vault_key(client, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], budgets=lambda user: [f"user:{user}"])
    def task(user):
        key = current_vault_key()
        with pytest.raises(CapExhaustedError) as e:
            charge(client, key, 5000)
        return key.id, key["budgets"], e.value.budget_id

    key_id, budgets, refused_by = task("py-celery")
    assert budgets == ["user:py-celery"] and refused_by == "user:py-celery"
    assert gateway.key(key_id)["status"] == "revoked"

    with vault_key(client, "stripe", ["/v1/payment_intents"], budgets=["user:py-celery"]) as key:
        assert key["budgets"] == ["user:py-celery"]
    assert client.delete_budget("user:py-celery")["deleted"] is True
