"""The official ``stripe`` and ``twilio`` packages (Debian's python3-stripe, python3-twilio)
against the real gateway: keyleash's refusals are recognised by the helpers and the Flask
extension, no SDK retries one, and outages are one typed error."""
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.request import Request, urlopen

import pytest

# Debian's python3-stripe / python3-twilio; CI installs them (clients/testing/run-suites.mjs requires them there).
stripe = pytest.importorskip("stripe")
pytest.importorskip("twilio")
from flask import Flask  # noqa: E402
from twilio.base.exceptions import TwilioRestException  # noqa: E402
from twilio.rest import Client as TwilioClient  # noqa: E402

from keyleash import (  # noqa: E402
    Keyleash,
    KeyleashConnectionError,
    NoVaultKeyError,
    is_cap_exhausted,
    is_endpoint_not_allowed,
    is_key_expired,
    is_key_revoked,
    is_keyleash_unavailable,
    keyleash_error_code,
)
from keyleash.celery import require_vault_key, vault_key, with_vault_key  # noqa: E402
from keyleash.flask import KeyleashFlask  # noqa: E402


@pytest.fixture()
def stripe_at_proxy(gateway, monkeypatch):
    monkeypatch.setattr(stripe, "api_base", gateway.proxy_url)
    monkeypatch.setattr(stripe, "max_network_retries", 2)
    return stripe


def denials(client, key_id):
    """keyleash's denials of one key (the audit log is written just after the answer)."""
    for _ in range(100):
        data = client.list_audit(key_id=key_id, decision="deny")["data"]
        if data:
            time.sleep(0.1)
            return [d["code"] for d in client.list_audit(key_id=key_id, decision="deny")["data"]]
        time.sleep(0.02)
    return []


def twilio_client(gateway, token):
    c = TwilioClient(gateway.twilio_account_sid, token)
    c.api.base_url = gateway.proxy_url + "/twilio"
    return c


def dead_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}", port


def test_stripe_package_cap_exhausted_is_recognised_and_not_retried(gateway, client, stripe_at_proxy):
    key = client.issue_key("stripe", ["/v1/payment_intents"], daily_usd_cap=0, expires_in="5m")
    before = len(gateway.stripe_requests())
    with pytest.raises(stripe.error.StripeError) as info:
        stripe.PaymentIntent.create(api_key=key.token, amount=500, currency="usd")
    err = info.value
    assert err.code is None or err.code == "cap_exhausted"  # stripe 5 drops it on a 429
    assert is_cap_exhausted(err)
    assert keyleash_error_code(err) == "cap_exhausted"
    assert not is_key_revoked(err)
    assert denials(client, key["id"]) == ["cap_exhausted"]
    assert len(gateway.stripe_requests()) == before


def test_stripe_package_revoked_and_refused_endpoint(client, stripe_at_proxy):
    key = client.issue_key("stripe", ["GET /v1/customers"], expires_in="5m")
    with pytest.raises(stripe.error.StripeError) as refused:
        stripe.PaymentIntent.create(api_key=key.token, amount=500, currency="usd")
    assert is_endpoint_not_allowed(refused.value)
    client.revoke_key(key["id"])
    with pytest.raises(stripe.error.StripeError) as revoked:
        stripe.Customer.list(api_key=key.token)
    assert is_key_revoked(revoked.value)
    assert not is_key_expired(revoked.value)
    assert denials(client, key["id"]) == ["key_revoked", "endpoint_not_allowed"]


def test_twilio_package_errors_are_recognised(gateway, client):
    sid = gateway.twilio_account_sid
    capped = client.issue_key("twilio", [f"POST /2010-04-01/Accounts/{sid}/Messages.json"], daily_usd_cap=0, expires_in="5m")
    with pytest.raises(TwilioRestException) as info:
        twilio_client(gateway, capped.token).messages.create(to="+15005550006", from_="+15005550001", body="hi")
    assert info.value.status == 429
    assert is_cap_exhausted(info.value)
    revoked = client.issue_key("twilio", [f"POST /2010-04-01/Accounts/{sid}/Messages.json"], daily_usd_cap=1, expires_in="5m")
    client.revoke_key(revoked["id"])
    with pytest.raises(TwilioRestException) as info2:
        twilio_client(gateway, revoked.token).messages.create(to="+15005550006", from_="+15005550001", body="hi")
    assert is_key_revoked(info2.value)
    assert not is_cap_exhausted(info2.value)


def test_key_expired_from_every_shape():
    body = {"code": "key_expired", "message": "expired", "request_id": "req_1", "error": {"type": "keyleash_error", "code": "key_expired"}}
    assert is_key_expired(stripe.error.AuthenticationError("expired", json_body=body, http_status=401))
    assert is_key_expired(TwilioRestException(401, "/x", msg="expired", code="key_expired", details=body))
    assert not is_key_expired(stripe.error.AuthenticationError("Invalid API Key", json_body={"error": {"type": "invalid_request_error"}}))


def test_flask_cap_exhausted_status_catches_the_stripe_packages_error(gateway, client, stripe_at_proxy):
    app = Flask(__name__)
    KeyleashFlask(app, client=client, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=0, cap_exhausted_status=402)

    @app.post("/pay")
    def pay():
        from flask import g

        stripe.PaymentIntent.create(api_key=g.vault_key, amount=500, currency="usd")
        return {"ok": True}

    @app.post("/declined")
    def declined():
        raise stripe.error.CardError("declined", param=None, code="card_declined", http_status=402)

    r = app.test_client().post("/pay")
    assert r.status_code == 402
    assert r.get_json()["code"] == "cap_exhausted"
    # Another Stripe error is not mistaken for a spent cap.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert app.test_client().post("/declined").status_code == 500


def test_flask_503_names_no_internals(gateway):
    url, port = dead_url()
    app = Flask(__name__)
    KeyleashFlask(app, client=Keyleash(url, gateway.proxy_url, gateway.admin_token, max_retries=0), vendor="stripe", allowed_endpoints=["/v1/customers"])
    app.get("/x")(lambda: "ran")
    r = app.test_client().get("/x")
    assert r.status_code == 503
    body = r.get_json()
    assert body["code"] == "vault_key_unavailable"
    assert body["reason"] == "connection_error"
    assert str(port) not in r.get_data(as_text=True)
    assert "127.0.0.1" not in r.get_data(as_text=True)
    assert "urllib3" not in r.get_data(as_text=True)


def test_flask_fail_open_then_session_raises_no_vault_key(gateway):
    url, _ = dead_url()
    app = Flask(__name__)
    ext = KeyleashFlask(app, client=Keyleash(url, gateway.proxy_url, gateway.admin_token, max_retries=0), vendor="stripe", allowed_endpoints=["/v1/customers"], fail_open=True)

    @app.get("/x")
    def x():
        try:
            ext.session()
        except NoVaultKeyError:
            return "no key"
        return "key"

    assert app.test_client().get("/x").get_data(as_text=True) == "no key"


def test_proxy_session_dead_proxy_is_keyleash_connection_error(gateway, client):
    key = client.issue_key("stripe", ["GET /v1/customers"], expires_in="5m")
    url, port = dead_url()
    dead = Keyleash(gateway.api_url, url, gateway.admin_token)
    with pytest.raises(KeyleashConnectionError) as info:
        dead.proxy(key, "GET", "/stripe/v1/customers")
    assert info.value.code == "connection_error"
    assert str(port) not in str(info.value)
    assert is_keyleash_unavailable(info.value)


def test_stripe_package_connection_error_is_unavailable(monkeypatch):
    url, _ = dead_url()
    monkeypatch.setattr(stripe, "api_base", url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    with pytest.raises(stripe.error.APIConnectionError) as info:
        stripe.Customer.list(api_key="vk_test_whatever")
    assert is_keyleash_unavailable(info.value)


def test_celery_fail_open_and_fail_closed(gateway):
    url, _ = dead_url()
    down = Keyleash(url, gateway.proxy_url, gateway.admin_token, max_retries=0)

    @with_vault_key(down, vendor="stripe", allowed_endpoints=["/v1/customers"], fail_open=True, issue_timeout=1.0, inject="vault_key")
    def lenient(vault_key=None):
        with pytest.raises(NoVaultKeyError):
            require_vault_key()
        return vault_key

    @with_vault_key(down, vendor="stripe", allowed_endpoints=["/v1/customers"], issue_timeout=1.0)
    def strict():
        raise AssertionError("must not run without a key")

    assert lenient() is None
    with pytest.raises(KeyleashConnectionError):
        strict()


def test_celery_issue_timeout_bounds_issuing(gateway):
    # A control API that accepts connections but never answers.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        slow = Keyleash(f"http://127.0.0.1:{srv.getsockname()[1]}", gateway.proxy_url, gateway.admin_token)
        with pytest.raises(KeyleashConnectionError) as info:
            with vault_key(slow, "stripe", ["/v1/customers"], issue_timeout=0.3):
                pass
        assert info.value.code == "timeout"
    finally:
        srv.close()


class _LossyFront(ThreadingHTTPServer):
    """Forwards to the control API; the first POST /v1/keys is forwarded, then cut unanswered."""

    daemon_threads = True

    def __init__(self, target):
        self.target = target
        self.seen = []
        self.dropped = False
        super().__init__(("127.0.0.1", 0), _LossyHandler)


class _LossyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        req = Request(self.server.target + self.path, data=body if body else None, method=self.command, headers=headers)
        try:
            resp = urlopen(req, timeout=10)
            status, rbody, rheaders = resp.status, resp.read(), resp.headers
        except Exception as e:  # HTTPError carries the answer
            status, rbody, rheaders = e.code, e.read(), e.headers
        if self.command == "POST" and self.path == "/v1/keys":
            self.server.seen.append(self.headers.get("Idempotency-Key"))
            if not self.server.dropped:
                self.server.dropped = True
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
        self.send_response(status)
        for k, v in rheaders.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(rbody)))
        self.end_headers()
        self.wfile.write(rbody)

    do_GET = do_POST = do_DELETE = _forward


def test_issue_retried_after_a_lost_answer_makes_one_key(gateway, client):
    front = _LossyFront(gateway.api_url)
    t = threading.Thread(target=front.serve_forever, daemon=True)
    t.start()
    try:
        flaky = Keyleash(f"http://127.0.0.1:{front.server_address[1]}", gateway.proxy_url, gateway.admin_token)
        label = f"py-lost-{uuid.uuid4().hex[:8]}"
        key = flaky.issue_key("stripe", ["GET /v1/customers"], label=label, expires_in="5m")
        assert len(front.seen) == 2 and front.seen[0] and front.seen[0] == front.seen[1]
        assert [k["id"] for k in client.list_keys(label_prefix=label)["data"]] == [key["id"]]
        assert client.proxy(key, "GET", "/stripe/v1/customers").status_code == 200
    finally:
        front.shutdown()
        front.server_close()


def test_minted_key_over_policy_is_clamped_and_reported_as_such(gateway, client):
    from keyleash import Minter

    mk = client.create_minting_key("stripe", ["GET /v1/customers"], max_daily_usd_cap=5, max_ttl="10m")
    key = mk.minter().mint("stripe", ["GET /v1/customers"], daily_usd_cap=100, expires_in="1h")
    assert key["daily_usd_cap"] == 5
    assert key["daily_cap_micros"] == 5_000_000
    assert mk.minter().mint("stripe", ["GET /v1/customers"])["daily_usd_cap"] == 5
    assert client.proxy(key, "GET", "/stripe/v1/customers").status_code == 200
    seen = client.get_key(key["id"])
    assert seen["daily_usd_cap"] == key["daily_usd_cap"]
    assert seen["expires_at"] == key["expires_at"]
    # A Minter without the policy reports what was asked for.
    assert Minter(mk.secret).mint("stripe", ["GET /v1/customers"], daily_usd_cap=100)["daily_usd_cap"] == 100
