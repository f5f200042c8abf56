import logging
import socket

import pytest
from flask import Flask, g, jsonify

from keyleash import Keyleash, is_cap_exhausted
from keyleash.flask import KeyleashFlask, current_vault_key, proxy_session

STRIPE_ENDPOINTS = ["/v1/payment_intents", "/v1/payment_intents/*"]


def make_app(client, **ext_kwargs):
    """The seed's Flask app, with the extension instead of hand-written hooks."""
    app = Flask(__name__)
    opts = dict(vendor="stripe", allowed_endpoints=STRIPE_ENDPOINTS, daily_usd_cap=100)
    opts.update(ext_kwargs)
    KeyleashFlask(app, client=client, **opts)

    def charge_tool(amount):  # a tool function: reads the request's key from g
        return proxy_session().post("/stripe/v1/payment_intents", json={"amount": amount, "currency": "usd", "customer": "cus_123"})

    @app.post("/charge/<int:amount>")
    def charge(amount):
        resp = charge_tool(amount)
        return jsonify(payment_intent=resp.json()["id"], key_id=g.vault_key_id)

    @app.post("/charge-by-hand/<int:amount>")
    def charge_by_hand(amount):
        # The seed written out: requests with g.vault_key, 429 cap_exhausted → the app's own 402.
        import requests

        r = requests.post(f"{client.proxy_url}/stripe/v1/payment_intents", headers={"Authorization": f"Bearer {g.vault_key}"}, json={"amount": amount, "currency": "usd"})
        if r.status_code == 429 and r.json()["code"] == "cap_exhausted":
            return jsonify(error="spend limit reached for this request", key_id=g.vault_key_id), 402
        return jsonify(payment_intent=r.json()["id"], key_id=g.vault_key_id)

    @app.get("/health")
    def health():
        return jsonify(has_key=g.vault_key is not None)

    @app.get("/whoami")
    def whoami():
        return jsonify(key_id=g.vault_key_id, vault_key=g.vault_key)

    @app.get("/multi")
    def multi():
        return jsonify(stripe=g.stripe_vault_key_id, refunds=g.refunds_vault_key_id, refunds_scope=current_vault_key("refunds")["allowed_endpoints"], has_tokens=bool(g.stripe_vault_key and g.refunds_vault_key))

    @app.get("/boom")
    def boom():
        app.config["BOOM_KEY"] = g.vault_key_id
        raise RuntimeError("view failed")

    return app


def test_issue_call_revoke_per_request(gateway, client):
    app = make_app(client, label=lambda req: f"flask-u42 {req.path}")
    with app.test_client() as c:
        a = c.post("/charge/5000").get_json()
        b = c.post("/charge/1000").get_json()
    assert a["payment_intent"].startswith("pi_")
    assert a["key_id"] != b["key_id"]
    key = gateway.key(a["key_id"])
    assert key["status"] == "revoked" and key["spend_today_usd"] == 50 and key["label"] == "flask-u42 /charge/5000"
    assert gateway.key(b["key_id"])["status"] == "revoked"
    assert gateway.stripe_requests()[-1]["authorization"] == f"Bearer {gateway.stripe_test_secret}"


def test_the_default_label_of_a_decoded_path_is_one_the_gateway_takes(gateway, client):
    app = make_app(client)

    @app.get("/w/<rest>")
    def anything(rest):
        return jsonify(key_id=g.vault_key_id)

    with app.test_client() as c:
        r = c.get("/w/k%0Ax%E2%80%AEy")  # decodes to "/w/k\nx\u202ey"
    assert r.status_code == 200
    assert gateway.key(r.get_json()["key_id"])["label"] == "flask GET /w/k\ufffdx\ufffdy"


@pytest.mark.parametrize("route", ["/charge/5000", "/charge-by-hand/5000"])
def test_cap_exhausted_becomes_402(gateway, client, route):
    app = make_app(client, daily_usd_cap=10, cap_exhausted_status=402)
    before = len(gateway.stripe_requests())
    with app.test_client() as c:
        r = c.post(route)
    assert r.status_code == 402
    assert len(gateway.stripe_requests()) == before


def test_health_and_metrics_are_skipped(client):
    app = make_app(client, label="py-skip-check")
    with app.test_client() as c:
        assert c.get("/health").get_json() == {"has_key": False}
    assert client.list_keys(label_prefix="py-skip-check")["data"] == []


def test_view_exception_still_revokes(gateway, client):
    app = make_app(client)
    with app.test_client() as c:
        assert c.get("/boom").status_code == 500
    assert gateway.key(app.config["BOOM_KEY"])["status"] == "revoked"


def test_several_vendors_one_key_each(gateway, client):
    app = make_app(
        client,
        vendor=None,
        allowed_endpoints=None,
        vendors={"stripe": {"allowed_endpoints": ["/v1/payment_intents"], "daily_usd_cap": 100}, "refunds": {"vendor": "stripe", "allowed_endpoints": ["POST /v1/refunds"], "daily_usd_cap": 20}},
    )
    with app.test_client() as c:
        body = c.get("/multi").get_json()
    assert body["stripe"] != body["refunds"] and body["has_tokens"]
    assert body["refunds_scope"] == ["POST /v1/refunds"]
    assert gateway.key(body["stripe"])["status"] == "revoked"
    assert gateway.key(body["refunds"])["status"] == "revoked"


@pytest.mark.parametrize("setting", ["KEYLEASH_USE_VAULT_KEYS", "USE_VAULT_KEYS"])
def test_off_switch_for_unit_tests(client, setting):
    app = make_app(client, label="py-off-switch")
    app.config[setting] = False
    with app.test_client() as c:
        assert c.get("/whoami").get_json() == {"key_id": None, "vault_key": None}
    assert client.list_keys(label_prefix="py-off-switch")["data"] == []


def test_fail_closed_by_default():
    down = Keyleash("http://127.0.0.1:1", "http://127.0.0.1:1", "x" * 20)
    app = make_app(down)
    with app.test_client() as c:
        r = c.get("/whoami")
    assert r.status_code == 503 and r.get_json()["code"] == "vault_key_unavailable"


def test_fail_open_runs_without_a_key_and_warns(caplog):
    down = Keyleash("http://127.0.0.1:1", "http://127.0.0.1:1", "x" * 20)
    app = make_app(down, fail_open=True)
    with caplog.at_level(logging.WARNING, logger="keyleash"), app.test_client() as c:
        r = c.get("/whoami")
    assert r.status_code == 200 and r.get_json() == {"key_id": None, "vault_key": None}
    assert "fail_open" in caplog.text


def test_issue_timeout(gateway):
    # A control API that accepts connections and never answers.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        silent = Keyleash(f"http://127.0.0.1:{s.getsockname()[1]}", gateway.proxy_url, "x" * 20)
        app = make_app(silent, issue_timeout=0.3)
        import time

        started = time.monotonic()
        with app.test_client() as c:
            r = c.get("/whoami")
        assert r.status_code == 503 and r.get_json()["code"] == "vault_key_unavailable"
        assert time.monotonic() - started < 2
    finally:
        s.close()


def test_is_cap_exhausted_on_a_response(gateway, client):
    key = client.issue_key(vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=1, expires_in="5m")
    r = client.session(key, raise_keyleash_errors=False).post("/v1/payment_intents", json={"amount": 500, "currency": "usd"})
    assert is_cap_exhausted(r)
