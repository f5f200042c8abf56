"""Minting keys and minted vault keys against the real gateway: keys minted and narrowed locally,
then used through the proxy (docs/minting.md). Amounts are whole cents in USD, so spend is exact
(a payment intent of N cents costs N/100 USD)."""
import json
import time

import pytest
from flask import Flask, g, jsonify

from keyleash import (
    CapExhaustedError,
    EndpointNotAllowedError,
    InvalidKeyError,
    InvalidRequestError,
    Keyleash,
    KeyExpiredError,
    KeyNotFoundError,
    KeyRevokedError,
    MintingKey,
    MintingKeyNotFoundError,
    Minter,
    decode_minted_token,
    narrow_key,
)
from keyleash import mint as mint_module

ENDPOINTS = ["/v1/payment_intents", "/v1/payment_intents/*", "POST /v1/refunds"]


def charge(client, key, amount, path="/stripe/v1/payment_intents"):
    return client.proxy(key, "POST", path, json={"amount": amount, "currency": "usd", "customer": "cus_123"})


def hand_narrowed(key, **caveats):
    """A narrowing block written by hand, bypassing narrow_key's checks (as any holder could)."""
    mk_suffix = key.minting_key_id[3:]
    block = {"id": f"mkey_{mk_suffix}_{mint_module._random_base62(24)}", **caveats}
    return mint_module._append(key.token, mint_module._b64(json.dumps(block).encode()))


@pytest.fixture()
def minting_key(client, request):
    mk = client.create_minting_key(
        vendors=["stripe"], allowed_endpoints=ENDPOINTS, max_daily_usd_cap=100, max_ttl="1h", label=f"py-{request.node.name}"[:200]
    )
    yield mk
    client.revoke_minting_key(mk.id, missing_ok=True)


@pytest.fixture()
def minter(minting_key):
    return minting_key.minter()


# -- the control API -------------------------------------------------------------------------------


def test_minting_key_create_get_list_revoke(client):
    mk = client.create_minting_key(
        "stripe", ["/v1/payment_intents", "POST /v1/refunds"], max_daily_usd_cap="12.5", max_ttl=600,
        label="py-mk-crud", metadata={"team": "py"},
    )
    assert isinstance(mk, MintingKey) and mk.object == "minting_key"
    assert mk.id.startswith("mk_") and len(mk.id) == 27
    assert mk.secret.startswith(f"klm_test_{mk.id[3:]}_1_")
    assert "klm_test" not in repr(mk)  # the secret is never printed
    assert (mk.mode, mk.vendors, mk.allowed_endpoints) == ("test", ["stripe"], ["/v1/payment_intents", "POST /v1/refunds"])
    assert (mk.max_daily_usd_cap, mk.max_daily_cap_micros, mk.max_ttl) == (12.5, 12_500_000, 600)
    assert (mk.status, mk.version, mk.revoked_at, mk.metadata) == ("active", 1, None, {"team": "py"})
    assert [v["version"] for v in mk.versions] == [1] and mk.versions[0]["retires_at"] is None
    minter = mk.minter()
    assert (minter.minting_key_id, minter.version, minter.mode) == (mk.id, 1, "test")

    got = client.get_minting_key(mk.id)
    assert got.id == mk.id and got.secret is None and "secret" not in got
    with pytest.raises(ValueError):
        got.minter()  # no secret outside the answers to create and rotate

    more = [client.create_minting_key(["stripe"], ["/v1/payment_intents"], label=f"py-mk-page-{i}").id for i in range(3)]
    page = client.list_minting_keys(limit=2)
    assert page["object"] == "list" and len(page["data"]) == 2 and page["has_more"] is True
    assert all(isinstance(k, MintingKey) and "secret" not in k for k in page["data"])
    assert {mk.id, *more} <= {k.id for k in client.iter_minting_keys(limit=2)}

    revoked = client.revoke_minting_key(mk.id)
    assert revoked.status == "revoked" and revoked.revoked_at is not None and revoked.keys_revoked == 0
    assert client.revoke_minting_key(mk.id).status == "revoked"  # idempotent
    assert client.get_minting_key(mk.id).status == "revoked"


def test_minting_key_errors(client):
    with pytest.raises(MintingKeyNotFoundError) as e:
        client.get_minting_key("mk_000000000000000000000000")
    assert e.value.status == 404 and e.value.code == "minting_key_not_found"
    with pytest.raises(MintingKeyNotFoundError):
        client.revoke_minting_key("mk_000000000000000000000000")
    assert client.revoke_minting_key("mk_000000000000000000000000", missing_ok=True) is None
    with pytest.raises(MintingKeyNotFoundError):
        client.rotate_minting_key("mk_000000000000000000000000")
    with pytest.raises(InvalidRequestError) as e:
        client.create_minting_key(["stripe"], ["/v1/payment_intents"], max_ttl="forever")
    assert e.value.status == 400 and e.value.param == "max_ttl"
    with pytest.raises(InvalidRequestError) as e:
        client.create_minting_key(["stripe"], [])
    assert e.value.param.startswith("allowed_endpoints")


# -- minted keys through the proxy -----------------------------------------------------------------


def test_a_minted_key_calls_stripe_with_the_real_secret(gateway, client, minting_key, minter):
    key = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=50, label="py-minted-1", metadata={"run": "py-m1"})
    with pytest.raises(KeyNotFoundError):
        client.get_key(key.id)  # nothing is recorded before the first use

    before = len(gateway.stripe_requests())
    resp = charge(client, key, 2000)
    assert resp.status_code == 200 and resp.json()["id"].startswith("pi_")
    seen = gateway.stripe_requests()
    assert len(seen) == before + 1
    assert seen[-1]["authorization"] == f"Bearer {gateway.stripe_test_secret}" and seen[-1]["form"]["amount"] == "2000"
    # The vendor's own paths work too: a minted key names its vendor.
    assert charge(client, key, 1000, path="/v1/payment_intents").status_code == 200

    got = client.get_key(key.id)
    assert (got["origin"], got["minting_key_id"], got["parent_id"]) == ("minted", minting_key.id, None)
    assert (got["status"], got["label"], got["vendor"], got["mode"]) == ("active", "py-minted-1", "stripe", "test")
    assert got["daily_usd_cap"] == 50 and got["spend_today_usd"] == 30 and got["metadata"] == {"run": "py-m1"}
    assert [k.id for k in client.list_keys(label_prefix="py-minted-1")["data"]] == [key.id]

    with pytest.raises(CapExhaustedError) as e:
        charge(client, key, 4000)  # $30 + $40 > $50
    assert e.value.remaining_usd == 20
    with pytest.raises(EndpointNotAllowedError):
        client.proxy(key, "POST", "/stripe/v1/refunds", json={"payment_intent": "pi_123"})
    assert len(gateway.stripe_requests()) == before + 2


def test_the_minting_keys_policy_bounds_what_a_key_claims(gateway, client, minter):
    uncapped = minter.mint("stripe", ["/v1/payment_intents"])
    greedy = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=500)
    for key in (uncapped, greedy):
        assert charge(client, key, 100).status_code == 200
        assert client.get_key(key.id)["daily_usd_cap"] == 100  # the minting key's max_daily_usd_cap
    with pytest.raises(CapExhaustedError):
        charge(client, greedy, 10_000)  # $101 in all

    before = len(gateway.stripe_requests())
    outside = minter.mint("stripe", ["/v1/customers"])
    with pytest.raises(EndpointNotAllowedError):  # its endpoints and the minting key's do not meet: it may call nothing
        client.proxy(outside, "GET", "/stripe/v1/customers")
    with pytest.raises(InvalidKeyError):
        charge(client, minter.mint("twilio", ["/v1/payment_intents"]), 100)  # a vendor the minting key does not allow
    with pytest.raises(InvalidKeyError):
        charge(client, minter.mint("stripe", ["/v1/payment_intents"], budgets=["user:py-not-allowed"]), 100)
    assert len(gateway.stripe_requests()) == before


def test_budgets_a_minted_key_names(client):
    client.create_budget("user:py-mint-u42", 1, "total")
    mk = client.create_minting_key(["stripe"], ["/v1/payment_intents"], allowed_budgets=["user:py-mint-*"])
    key = mk.minter().mint("stripe", ["/v1/payment_intents"], daily_usd_cap=100, budgets=["user:py-mint-u42"])
    assert charge(client, key, 60).status_code == 200
    with pytest.raises(CapExhaustedError) as e:
        charge(client, key, 50)  # $1.10 of the $1 budget
    assert e.value.budget_id == "user:py-mint-u42"
    assert client.get_key(key.id)["budgets"] == ["user:py-mint-u42"]
    assert client.get_budget("user:py-mint-u42")["spend_usd"] == 0.6
    client.revoke_minting_key(mk.id)


# -- narrowing for sub-agents ----------------------------------------------------------------------


def test_a_sub_agents_narrowed_key(gateway, client, minter):
    parent = minter.mint("stripe", ENDPOINTS, daily_usd_cap=100, label="py-orchestrator")
    assert charge(client, parent, 1000).status_code == 200
    child = narrow_key(parent, allowed_endpoints=["POST /v1/payment_intents"], daily_usd_cap=30, label="py-sub-agent")

    assert charge(client, child, 2000).status_code == 200
    before = len(gateway.stripe_requests())
    with pytest.raises(CapExhaustedError) as e:
        charge(client, child, 1500)  # $20 + $15 > the child's $30
    assert e.value.remaining_usd == 10
    with pytest.raises(EndpointNotAllowedError):
        client.proxy(child, "GET", "/stripe/v1/payment_intents")
    with pytest.raises(EndpointNotAllowedError):
        client.proxy(child, "POST", "/stripe/v1/refunds", json={"payment_intent": "pi_123"})
    assert len(gateway.stripe_requests()) == before

    got = client.get_key(child.id)
    assert (got["origin"], got["parent_id"], got["minting_key_id"]) == ("minted", parent.id, parent.minting_key_id)
    assert got["daily_usd_cap"] == 30 and got["spend_today_usd"] == 20 and got["label"] == "py-orchestrator/py-sub-agent"
    assert child.label == got["label"]
    assert got["allowed_endpoints"] == ["POST /v1/payment_intents"]
    assert client.get_key(parent.id)["spend_today_usd"] == 30  # its own $10 and the child's $20


def test_a_narrowed_keys_label_is_the_one_the_gateway_records(client, minter):
    root = minter.mint("stripe", ["/v1/payment_intents"], label="py-run7")
    tool = narrow_key(root, label="refund-tool")
    kept = narrow_key(tool, daily_usd_cap=1)
    step = narrow_key(kept, label="step 2")
    bare = narrow_key(minter.mint("stripe", ["/v1/payment_intents"]), label="sub")
    keys = [root, tool, kept, step, bare]
    assert [k.label for k in keys] == ["py-run7", "py-run7/refund-tool", "py-run7/refund-tool", "py-run7/refund-tool/step 2", "/sub"]
    for k in keys:
        assert charge(client, k, 1).status_code == 200
        assert client.get_key(k.id)["label"] == k.label


def test_siblings_share_their_parents_cap(gateway, client, minter):
    parent = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=50)
    a = narrow_key(parent, daily_usd_cap=40)
    b = narrow_key(parent, daily_usd_cap=40)
    assert charge(client, a, 3000).status_code == 200
    before = len(gateway.stripe_requests())
    with pytest.raises(CapExhaustedError):
        charge(client, b, 2500)  # within b's $40, past what is left of the parent's $50
    assert len(gateway.stripe_requests()) == before
    assert charge(client, b, 2000).status_code == 200
    assert client.get_key(parent.id)["spend_today_usd"] == 50
    with pytest.raises(CapExhaustedError):
        charge(client, parent, 1)


def test_a_caveat_claiming_more_changes_nothing(gateway, client, minter):
    parent = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
    wider = hand_narrowed(parent, cap=1_000_000_000, endpoints=["/v1/payment_intents", "/v1/customers"])
    before = len(gateway.stripe_requests())
    with pytest.raises(CapExhaustedError):
        charge(client, wider, 2000)
    with pytest.raises(EndpointNotAllowedError):
        client.proxy(wider, "GET", "/stripe/v1/customers")
    assert len(gateway.stripe_requests()) == before
    assert charge(client, wider, 500).status_code == 200


# -- refusals --------------------------------------------------------------------------------------


def test_revoking_a_minted_key_before_its_first_use(gateway, client, minter):
    key = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
    revoked = client.revoke_key(key.id)
    assert revoked["id"] == key.id and revoked["status"] == "revoked"
    assert client.revoke_key(key.id)["status"] == "revoked"  # idempotent
    before = len(gateway.stripe_requests())
    with pytest.raises(KeyRevokedError) as e:
        charge(client, key, 100)
    assert e.value.status == 401
    # And its narrowings with it.
    with pytest.raises(KeyRevokedError):
        charge(client, narrow_key(key, daily_usd_cap=1), 100)
    assert len(gateway.stripe_requests()) == before


def test_revoking_a_parent_stops_its_narrowed_keys(client, minter):
    parent = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
    used_child = narrow_key(parent, daily_usd_cap=5)
    assert charge(client, used_child, 100).status_code == 200
    unused_child = narrow_key(parent, daily_usd_cap=5)
    client.revoke_key(parent.id)
    for key in (parent, used_child, unused_child):
        with pytest.raises(KeyRevokedError):
            charge(client, key, 100)


def test_revoking_the_minting_key_refuses_its_keys(gateway, client, minting_key, minter):
    used = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
    assert charge(client, used, 100).status_code == 200
    unused = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)

    res = client.revoke_minting_key(minting_key.id)
    assert res.status == "revoked" and res.keys_revoked == 1
    before = len(gateway.stripe_requests())
    for key in (used, unused, narrow_key(used, daily_usd_cap=1), minter.mint("stripe", ["/v1/payment_intents"])):
        with pytest.raises(KeyRevokedError):
            charge(client, key, 100)
    assert len(gateway.stripe_requests()) == before


def test_tampered_tokens_are_invalid(gateway, client, minter):
    key = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
    child = narrow_key(key, daily_usd_cap=5)
    head, *blocks, sig = child.token.split(".")

    def flip(s, i):
        return s[:i] + ("B" if s[i] == "A" else "A") + s[i + 1 :]

    tampered = {
        "flipped character in block 0": ".".join([head, flip(blocks[0], len(blocks[0]) // 2), blocks[1], sig]),
        "flipped character in block 1": ".".join([head, blocks[0], flip(blocks[1], 5), sig]),
        "flipped character in the signature": ".".join([head, *blocks, flip(sig, 10)]),
        "last block dropped": ".".join([head, blocks[0], sig]),
        "blocks reordered": ".".join([head, blocks[1], blocks[0], sig]),
        "another mode in the prefix": child.token.replace("vk_test_m1.", "vk_live_m1.", 1),
        "signed with another secret": Minter(minter_secret_with_other_bytes(minter)).mint("stripe", ["/v1/payment_intents"]).token,
        "an unknown caveat": hand_narrowed(key, scope="everything"),
        "a caveat of the wrong type": hand_narrowed(key, cap="5"),
        "an id from another minting key": mint_module._append(key.token, mint_module._b64(json.dumps({"id": "mkey_" + "Z" * 24 + "_" + "A" * 24}).encode())),
        "an id repeated in the chain": mint_module._append(key.token, mint_module._b64(json.dumps({"id": key.id}).encode())),
    }
    before = len(gateway.stripe_requests())
    for what, token in tampered.items():
        with pytest.raises(InvalidKeyError) as e:
            charge(client, token, 100)
        assert e.value.status == 401, what
    assert len(gateway.stripe_requests()) == before
    assert charge(client, child, 100).status_code == 200  # the untouched token still works


def minter_secret_with_other_bytes(minter):
    return f"klm_{minter.mode}_{minter.minting_key_id[3:]}_{minter.version}_{'Q' * 43}"


def test_expired_minted_keys(gateway, client, minting_key):
    secret = minting_key.secret
    before = len(gateway.stripe_requests())
    # exp in the past.
    past = Minter(secret, clock=lambda: time.time() - 7200).mint("stripe", ["/v1/payment_intents"], expires_in="30m")
    with pytest.raises(KeyExpiredError) as e:
        charge(client, past, 100)
    assert e.value.status == 401
    # exp still ahead, but iat + the minting key's max_ttl (1h) is not.
    long = Minter(secret, clock=lambda: time.time() - 7200).mint("stripe", ["/v1/payment_intents"], expires_in="1d")
    with pytest.raises(KeyExpiredError):
        charge(client, long, 100)
    # Minted by a clock far ahead of the gateway's.
    with pytest.raises(InvalidKeyError):
        charge(client, Minter(secret, clock=lambda: time.time() + 600).mint("stripe", ["/v1/payment_intents"]), 100)
    assert len(gateway.stripe_requests()) == before

    short = Minter(secret).mint("stripe", ["/v1/payment_intents"], expires_in=1)
    time.sleep(2.1)
    with pytest.raises(KeyExpiredError):
        charge(client, short, 100)


def test_rotation_keeps_old_keys_working_through_the_grace_period(client, minting_key):
    v1 = minting_key.minter()
    rotated = client.rotate_minting_key(minting_key.id, grace_period="1h")
    assert rotated.version == 2 and rotated.secret.startswith(f"klm_test_{minting_key.id[3:]}_2_")
    versions = {v["version"]: v for v in rotated.versions}
    assert versions[1]["retires_at"] is not None and versions[2]["retires_at"] is None
    v2 = rotated.minter()
    assert v2.version == 2
    for m in (v1, v2):
        key = m.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
        assert decode_minted_token(key.token).blocks[0]["kv"] == m.version
        assert charge(client, key, 100).status_code == 200

    # A short grace period: v2's keys, used or not, stop when it ends.
    used = v2.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
    assert charge(client, used, 100).status_code == 200
    unused = v2.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10)
    v3 = client.rotate_minting_key(minting_key.id, grace_period=1).minter()
    time.sleep(2.1)
    for key in (used, unused):
        with pytest.raises(KeyExpiredError):
            charge(client, key, 100)
    assert charge(client, v3.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=10), 100).status_code == 200


# -- Flask and Celery in minting mode --------------------------------------------------------------


def make_minting_app(gateway, minter, **ext_kwargs):
    from keyleash.flask import KeyleashFlask, proxy_session

    app = Flask(__name__)
    # The control API is unreachable: minting must not need it.
    opts = dict(client=Keyleash("http://127.0.0.1:1", gateway.proxy_url, "x" * 20), minter=minter, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=100)
    opts.update(ext_kwargs)
    KeyleashFlask(app, **opts)

    @app.post("/charge/<int:amount>")
    def charge_view(amount):
        resp = proxy_session().post("/stripe/v1/payment_intents", json={"amount": amount, "currency": "usd"})
        return jsonify(payment_intent=resp.json()["id"], key_id=g.vault_key_id)

    @app.post("/charge-by-hand/<int:amount>")
    def charge_by_hand(amount):
        import requests

        r = requests.post(f"{gateway.proxy_url}/stripe/v1/payment_intents", headers={"Authorization": f"Bearer {g.vault_key}"}, json={"amount": amount, "currency": "usd"}, timeout=10)
        if r.status_code == 429 and r.json()["code"] == "cap_exhausted":
            return jsonify(error="spend limit reached for this request", key_id=g.vault_key_id), 402
        return jsonify(payment_intent=r.json()["id"], key_id=g.vault_key_id)

    return app


def test_flask_mints_each_requests_key(gateway, client, minter):
    app = make_minting_app(gateway, minter, label=lambda req: f"py-flask-mint {req.path}")
    with app.test_client() as c:
        a = c.post("/charge/5000")
        b = c.post("/charge/1000")
    assert a.status_code == 200 and b.status_code == 200, (a.get_json(), b.get_json())
    a, b = a.get_json(), b.get_json()
    assert a["payment_intent"].startswith("pi_") and a["key_id"] != b["key_id"] and a["key_id"].startswith("mkey_")
    key = gateway.key(a["key_id"])
    assert key["origin"] == "minted" and key["minting_key_id"] == minter.minting_key_id
    assert key["spend_today_usd"] == 50 and key["label"] == "py-flask-mint /charge/5000"
    assert key["status"] == "active"  # not revoked at teardown by default: no call at the end either
    assert gateway.stripe_requests()[-1]["authorization"] == f"Bearer {gateway.stripe_test_secret}"


@pytest.mark.parametrize("route", ["/charge/5000", "/charge-by-hand/5000"])
def test_flask_minted_cap_exhausted_becomes_402(gateway, minter, route):
    app = make_minting_app(gateway, minter, daily_usd_cap=10, cap_exhausted_status=402)
    before = len(gateway.stripe_requests())
    with app.test_client() as c:
        r = c.post(route)
    assert r.status_code == 402
    if route.startswith("/charge/"):  # the extension's handler
        assert r.get_json()["code"] == "cap_exhausted"
    assert len(gateway.stripe_requests()) == before


def test_flask_can_revoke_minted_keys_at_teardown(gateway, client, minter):
    app = make_minting_app(gateway, minter, client=client, revoke_minted=True)
    with app.test_client() as c:
        r = c.post("/charge/1000").get_json()
    assert gateway.key(r["key_id"])["status"] == "revoked"


def test_celery_task_mints_its_key(gateway, client, minter):
    celery = pytest.importorskip("celery")
    from keyleash.celery import current_vault_key, with_vault_key

    app = celery.Celery("keyleash-mint-tests", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True

    @app.task
    @with_vault_key(minter, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=50, label=lambda order: f"py-celery-mint-{order}")
    def charge_task(order):
        key = current_vault_key()
        resp = charge(client, key, 1200)
        return {"key_id": key.id, "pi": resp.json()["id"]}

    seen = {}

    @app.task
    @with_vault_key(minter, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=5, inject="vault_key", revoke_with=client)
    def failing(vault_key=None):
        charge(client, vault_key, 100)
        seen["id"] = vault_key.id
        raise RuntimeError("task failed midway")

    out = charge_task.delay("42").get()
    assert out["pi"].startswith("pi_")
    key = gateway.key(out["key_id"])
    assert key["origin"] == "minted" and key["label"] == "py-celery-mint-42" and key["spend_today_usd"] == 12
    assert key["status"] == "active"  # no revoke_with: it expires at its 30-minute TTL
    assert current_vault_key() is None

    with pytest.raises(RuntimeError, match="task failed midway"):
        failing.delay().get()
    assert gateway.key(seen["id"])["status"] == "revoked"
