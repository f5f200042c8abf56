"""Minting and narrowing, offline: the shared vectors (docs/minting-vectors.json) byte for byte,
the rules that refuse widening, and validation. No gateway needed."""
import json
import os
import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from keyleash import MintError, Minter, VaultKey, decode_minted_token, narrow_key, usd_to_micros
from keyleash import mint as mint_module
from keyleash.mint import MAX_CHAIN_BLOCKS, _append, _b64

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "docs" / "minting-vectors.json").read_text())
IAT = 1796083200  # block 0's iat in the vectors
ROOT_ENDPOINTS = ["/v1/payment_intents", "/v1/payment_intents/*", "POST /v1/refunds"]


def segment(block_text):
    return _b64(block_text.encode("utf-8"))


def fixed_ids(monkeypatch, *suffixes):
    """Makes the next ids the vectors' ones (their random part is fixed text)."""
    it = iter(suffixes)
    monkeypatch.setattr(mint_module, "_random_base62", lambda n: next(it))


@pytest.fixture()
def minter():
    return Minter(VECTORS["secret"], clock=lambda: IAT)


# -- the vectors -----------------------------------------------------------------------------------


def test_minter_reads_the_vector_secret(minter):
    assert minter.minting_key_id == VECTORS["minting_key_id"]
    assert minter.version == VECTORS["version"] and minter.mode == "test"
    assert VECTORS["secret"] not in repr(minter) and VECTORS["secret"].rsplit("_", 1)[1] not in repr(minter)
    assert bytes.fromhex(VECTORS["secret_bytes_hex"]) == mint_module._unb64(VECTORS["secret"].rsplit("_", 1)[1])


@pytest.mark.parametrize("vector", VECTORS["mint"], ids=["compact", "whitespace"])
def test_signing_the_vector_block_text_gives_the_vector_token(minter, vector):
    seg = segment(vector["block"])
    assert f"vk_test_m1.{seg}.{minter._sign(seg)}" == vector["token"]


@pytest.mark.parametrize("vector", VECTORS["narrow"], ids=["child", "grandchild"])
def test_chaining_the_vector_block_onto_the_parent_gives_the_vector_token(vector):
    assert _append(vector["parent"], segment(vector["block"])) == vector["token"]


def test_mint_writes_the_vector_block(minter, monkeypatch):
    fixed_ids(monkeypatch, "RootKey00000000000000001")
    key = minter.mint(
        "stripe", ROOT_ENDPOINTS, daily_usd_cap=100, expires_in="15m",
        label="flask-u42-run7", metadata={"user_id": "u42"}, budgets=["user:u42"],
    )
    vector = VECTORS["mint"][0]
    assert key.token == vector["token"]
    assert isinstance(key, VaultKey) and "vk_test_m1" not in repr(key)
    assert dict(key) == {
        "object": "vault_key",
        "origin": "minted",
        "id": vector["id"],
        "token": vector["token"],
        "label": "flask-u42-run7",
        "vendor": "stripe",
        "mode": "test",
        "allowed_endpoints": ROOT_ENDPOINTS,
        "methods": None,
        "daily_usd_cap": 100,
        "daily_cap_micros": 100_000_000,
        "metadata": {"user_id": "u42"},
        "budgets": ["user:u42"],
        "status": "active",
        "created_at": "2026-12-01T00:00:00.000Z",
        "expires_at": "2026-12-01T00:15:00.000Z",
        "minting_key_id": VECTORS["minting_key_id"],
        "parent_id": None,
    }


def test_narrow_key_writes_the_vector_blocks(monkeypatch):
    parent = VECTORS["mint"][0]["token"]
    fixed_ids(monkeypatch, "ChildKey0000000000000001", "GrandChild00000000000001")
    child = narrow_key(parent, allowed_endpoints=["POST /v1/refunds"], daily_usd_cap="5", expires_in="10m", label="refund-tool", clock=lambda: IAT)
    assert child.token == VECTORS["narrow"][0]["token"] and child.id == VECTORS["narrow"][0]["id"]
    assert child.parent_id == VECTORS["mint"][0]["id"] and child.origin == "minted"
    assert child.allowed_endpoints == ["POST /v1/refunds"] and child.daily_cap_micros == 5_000_000 and child.daily_usd_cap == 5
    assert child.expires_at == "2026-12-01T00:10:00.000Z" and child.label == "flask-u42-run7/refund-tool"
    assert child.metadata == {"user_id": "u42"} and child.budgets == ["user:u42"]

    grandchild = narrow_key(child, methods=["POST"], metadata={"tool": "refund"})
    assert grandchild.token == VECTORS["narrow"][1]["token"]
    assert grandchild.parent_id == child.id and grandchild.methods == ["POST"]
    assert grandchild.label == "flask-u42-run7/refund-tool" and grandchild.daily_usd_cap == 5  # inherited
    assert grandchild.metadata == {"user_id": "u42", "tool": "refund"}
    assert grandchild.expires_at == child.expires_at


def test_a_narrowed_key_reports_the_label_the_gateway_records(minter):
    parent = minter.mint("stripe", ["/v1/x"], label="run")
    tool = narrow_key(parent, label="refund-tool", clock=lambda: IAT)
    assert tool.label == "run/refund-tool"
    assert decode_minted_token(tool.token).blocks[1]["label"] == "refund-tool"  # the block holds its own part only
    kept = narrow_key(tool, daily_usd_cap=1, clock=lambda: IAT)
    assert kept.label == "run/refund-tool"
    assert narrow_key(kept.token, label="step", clock=lambda: IAT).label == "run/refund-tool/step"
    assert narrow_key(parent, label="", clock=lambda: IAT).label == "run/"
    bare = minter.mint("stripe", ["/v1/x"])
    assert narrow_key(bare, label="sub", clock=lambda: IAT).label == "/sub"
    assert narrow_key(bare, clock=lambda: IAT).label == ""


@pytest.mark.parametrize("bad", ["a\tb", "\x00", "\x1f", "\x7f", "\x80", "\x9f", "\u202a", "\u202e", "\u2066", "\u2069"])
def test_narrowing_refuses_control_characters_in_label_and_metadata(minter, bad):
    parent = minter.mint("stripe", ["/v1/x"], label="run")
    with pytest.raises(MintError) as e:
        narrow_key(parent, label=bad)
    assert e.value.param == "label"
    with pytest.raises(MintError) as e:
        narrow_key(parent, metadata={"tool": bad})
    assert e.value.param == "metadata.tool"


@pytest.mark.parametrize("ok", [" ", "~", "\xa0", "\u2029", "\u202f", "\u2065", "\u206a", "é", "\U0001F600"])
def test_the_neighbours_of_the_refused_characters_are_accepted(minter, ok):
    key = narrow_key(minter.mint("stripe", ["/v1/x"], label=ok, metadata={"a": ok}), label=ok, metadata={"b": ok})
    assert key.label == f"{ok}/{ok}" and key.metadata == {"a": ok, "b": ok}


def test_decode_reads_every_block():
    token = VECTORS["narrow"][1]["token"]
    mode, blocks = decode_minted_token(token)
    assert mode == "test"
    assert blocks == [json.loads(VECTORS["mint"][0]["block"]), json.loads(VECTORS["narrow"][0]["block"]), json.loads(VECTORS["narrow"][1]["block"])]
    # Whitespace is part of the signed text: same caveats, another token.
    assert decode_minted_token(VECTORS["mint"][1]["token"]).blocks == decode_minted_token(VECTORS["mint"][0]["token"]).blocks
    assert VECTORS["mint"][1]["token"] != VECTORS["mint"][0]["token"]


@pytest.mark.parametrize("token", VECTORS["malformed"] + [None, "", "vk_test_0123456789abcdef", "vk_test_m1." + "A" * 43])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(MintError) as e:
        decode_minted_token(token)
    assert e.value.param == "token"
    with pytest.raises(MintError):
        narrow_key(token, daily_usd_cap=1)


@pytest.mark.parametrize("block", [b"not json", b"[1, 2]", b'"text"'])
def test_a_block_that_is_not_a_json_object_is_refused(block):
    with pytest.raises(MintError, match="block"):
        decode_minted_token(f"vk_test_m1.{_b64(block)}.{'A' * 43}")


def test_a_token_longer_than_the_gateway_takes_is_refused(minter):
    token = VECTORS["mint"][0]["token"]
    seg = segment(json.dumps({"id": "x" * (8192 - len(token))}))
    with pytest.raises(MintError):
        decode_minted_token(_append(token, seg))


# -- narrowing never widens ------------------------------------------------------------------------


@pytest.fixture()
def parent(minter):
    return minter.mint("stripe", ROOT_ENDPOINTS, daily_usd_cap=100, metadata={"user_id": "u42"}, methods=["GET", "POST"])


@pytest.mark.parametrize("wanted", [["/v1/customers"], ["/v1/refunds"], ["GET /v1/refunds"], ["/v1/payment_intents/*/capture"], ["/v1/payment_intents", "/v1"]])
def test_narrowing_to_endpoints_outside_the_parent_is_refused(parent, wanted):
    with pytest.raises(MintError) as e:
        narrow_key(parent, allowed_endpoints=wanted)
    assert e.value.param == f"allowed_endpoints.{len(wanted) - 1}"


@pytest.mark.parametrize("wanted", [["/v1/payment_intents"], ["GET /v1/payment_intents/pi_123"], ["post /v1/refunds"], ["/v1/payment_intents/*", "POST /v1/refunds"]])
def test_narrowing_to_endpoints_inside_the_parent(parent, wanted):
    child = narrow_key(parent, allowed_endpoints=wanted)
    assert child.allowed_endpoints == wanted
    assert decode_minted_token(child.token).blocks[-1]["endpoints"] == wanted


def test_narrowing_to_a_higher_cap_is_refused(parent):
    with pytest.raises(MintError) as e:
        narrow_key(parent, daily_usd_cap="100.000001")
    assert e.value.param == "daily_usd_cap"
    child = narrow_key(parent, daily_usd_cap=40)
    assert narrow_key(parent, daily_usd_cap=100).daily_usd_cap == 100
    with pytest.raises(MintError):
        narrow_key(child, daily_usd_cap=41)  # the child's own cap is the limit now
    assert narrow_key(child, daily_usd_cap=Decimal("39.5")).daily_cap_micros == 39_500_000


def test_narrowing_to_other_methods_is_refused(parent):
    with pytest.raises(MintError) as e:
        narrow_key(parent, methods=["DELETE"])
    assert e.value.param == "methods"
    post = narrow_key(parent, methods=["post"])
    assert post.methods == ["POST"]
    with pytest.raises(MintError):
        narrow_key(post, methods=["GET"])


def test_a_parents_metadata_cannot_change(parent):
    with pytest.raises(MintError) as e:
        narrow_key(parent, metadata={"user_id": "u43"})
    assert e.value.param == "metadata.user_id"
    child = narrow_key(parent, metadata={"user_id": "u42", "tool": "refund"})
    assert child.metadata == {"user_id": "u42", "tool": "refund"}
    with pytest.raises(MintError):
        narrow_key(child, metadata={"tool": "charge"})  # set by the child, fixed for its children


def test_a_later_expiry_is_cut_to_the_parents(minter):
    now = IAT + 10
    parent = minter.mint("stripe", ROOT_ENDPOINTS, expires_in=60)
    later = narrow_key(parent, expires_in="1h", clock=lambda: now)
    assert later.expires_at == parent.expires_at
    assert "exp" not in decode_minted_token(later.token).blocks[-1]  # nothing to write: the parent's holds
    sooner = narrow_key(parent, expires_in=30, clock=lambda: now)
    assert decode_minted_token(sooner.token).blocks[-1]["exp"] == now + 30
    assert narrow_key(sooner, expires_in="1h").expires_at == sooner.expires_at


def test_narrowing_with_nothing_asked_only_gives_a_new_id(parent):
    child = narrow_key(parent)
    assert decode_minted_token(child.token).blocks[-1] == {"id": child.id}
    assert child.id != parent.id and child.parent_id == parent.id
    assert (child.allowed_endpoints, child.daily_usd_cap, child.methods, child.metadata) == (parent.allowed_endpoints, parent.daily_usd_cap, parent.methods, parent.metadata)


def test_chains_stop_at_the_gateways_limit(parent):
    key = parent
    for _ in range(MAX_CHAIN_BLOCKS - 1):
        key = narrow_key(key)
    assert len(decode_minted_token(key.token).blocks) == MAX_CHAIN_BLOCKS
    with pytest.raises(MintError, match="narrowed 15 times"):
        narrow_key(key)


def test_a_parent_without_a_token_is_refused():
    with pytest.raises(MintError) as e:
        narrow_key(VaultKey(id="mkey_x", status="active"))  # e.g. what get_key answers
    assert e.value.param == "parent"


# -- minting: ids, money, TTLs, validation --------------------------------------------------------


def test_ids_are_random_base62_under_the_minting_key(minter):
    ids = {minter.mint("stripe", ["/v1/payment_intents"]).id for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"mkey_M1nt1ngKeyTestVector0001_[0-9A-Za-z]{24}", i) for i in ids)


def test_rejection_sampling_maps_bytes_uniformly():
    table = mint_module._BASE62_TABLE
    counts = Counter(table[:248])
    assert set(counts) == set(mint_module._ALPHABET) and set(counts.values()) == {4}
    assert set(mint_module._REJECTED) == set(range(248, 256))
    assert bytes(range(248, 256)).translate(table, mint_module._REJECTED) == b""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_does_not_reuse_the_parents_random_bytes(minter):
    minter.mint("stripe", ["/v1/payment_intents"])  # the pool now holds bytes a child would inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then out without running pytest's teardown
        try:
            os.write(write, minter.mint("stripe", ["/v1/payment_intents"]).id.encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        child_id = f.read()
    assert child_id.startswith("mkey_") and child_id != minter.mint("stripe", ["/v1/payment_intents"]).id


@pytest.mark.parametrize(
    "usd, micros",
    [(0, 0), (100, 100_000_000), ("12.34", 12_340_000), ("0.000001", 1), (0.1, 100_000), (2.01, 2_010_000), (1e-05, 10), (Decimal("19.990000"), 19_990_000), ("999999999", 999_999_999_000_000)],
)
def test_usd_is_converted_to_exact_micro_dollars(minter, usd, micros):
    assert usd_to_micros(usd) == micros
    key = minter.mint("stripe", ["/v1/payment_intents"], daily_usd_cap=usd)
    assert key.daily_cap_micros == micros and decode_minted_token(key.token).blocks[0]["cap"] == micros
    assert key.daily_usd_cap == micros / 1_000_000 and isinstance(key.daily_usd_cap, int) == (micros % 1_000_000 == 0)


def test_no_cap_writes_none(minter):
    key = minter.mint("stripe", ["/v1/payment_intents"])
    assert key.daily_usd_cap is None and key.daily_cap_micros is None
    assert "cap" not in decode_minted_token(key.token).blocks[0]


@pytest.mark.parametrize("expires_in, seconds", [(None, 900), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (45, 45), (120.0, 120), (timedelta(minutes=2), 120)])
def test_expires_in(minter, expires_in, seconds):
    key = minter.mint("stripe", ["/v1/payment_intents"]) if expires_in is None else minter.mint("stripe", ["/v1/payment_intents"], expires_in=expires_in)
    block = decode_minted_token(key.token).blocks[0]
    assert block["iat"] == IAT and block["exp"] == IAT + seconds


def test_the_clock_is_floored_to_whole_seconds():
    key = Minter(VECTORS["secret"], clock=lambda: IAT + 0.999).mint("stripe", ["/v1/payment_intents"], expires_in=60)
    assert decode_minted_token(key.token).blocks[0]["iat"] == IAT


@pytest.mark.parametrize(
    "kwargs, param",
    [
        (dict(vendor=""), "vendor"),
        (dict(vendor="x" * 65), "vendor"),
        (dict(allowed_endpoints=[]), "allowed_endpoints"),
        (dict(allowed_endpoints="/v1/payment_intents"), "allowed_endpoints"),
        (dict(allowed_endpoints=["/v1/x"] * 101), "allowed_endpoints"),
        (dict(allowed_endpoints=["v1/payment_intents"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1/ok", "FETCH /v1/x"]), "allowed_endpoints.1"),
        (dict(allowed_endpoints=["POST  /v1/refunds"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1/payment_intents?limit=1"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1//payment_intents"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1/payment_intents/"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1/../admin"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1/pi_*"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1/caf%C3%A9"]), "allowed_endpoints.0"),
        (dict(allowed_endpoints=["/v1/café"]), "allowed_endpoints.0"),
        (dict(daily_usd_cap=-1), "daily_usd_cap"),
        (dict(daily_usd_cap="1.1234567"), "daily_usd_cap"),
        (dict(daily_usd_cap="1e3"), "daily_usd_cap"),
        (dict(daily_usd_cap="ten"), "daily_usd_cap"),
        (dict(daily_usd_cap=True), "daily_usd_cap"),
        (dict(daily_usd_cap=float("nan")), "daily_usd_cap"),
        (dict(daily_usd_cap=float("inf")), "daily_usd_cap"),
        (dict(daily_usd_cap=0.1234567), "daily_usd_cap"),
        (dict(daily_usd_cap=10**10), "daily_usd_cap"),  # past what the gateway reads exactly
        (dict(expires_in="forever"), "expires_in"),
        (dict(expires_in="5 m"), "expires_in"),
        (dict(expires_in=0), "expires_in"),
        (dict(expires_in=-5), "expires_in"),
        (dict(expires_in=1.5), "expires_in"),
        (dict(expires_in=True), "expires_in"),
        (dict(label="x" * 201), "label"),
        (dict(label="\U0001F600" * 101), "label"),  # 202 UTF-16 units, as the gateway counts
        (dict(label="\ud800"), "label"),
        (dict(label="run\n7"), "label"),
        (dict(label="\x00"), "label"),
        (dict(label="\x1b[31m"), "label"),
        (dict(label="a\x7f"), "label"),
        (dict(label="a\x85"), "label"),
        (dict(label="a\x9f"), "label"),
        (dict(label="\u202eevil"), "label"),
        (dict(label="a\u2066b"), "label"),
        (dict(label="a\u2069b"), "label"),
        (dict(metadata={"k": "v\r\n"}), "metadata.k"),
        (dict(metadata={"k": "v\u202a"}), "metadata.k"),
        (dict(metadata={"bad key": "v"}), "metadata.bad key"),
        (dict(metadata={"k": 5}), "metadata.k"),
        (dict(metadata={"k": "v" * 501}), "metadata.k"),
        (dict(metadata={f"k{i}": "v" for i in range(51)}), "metadata"),
        (dict(metadata=["k", "v"]), "metadata"),
        (dict(budgets=["user u42"]), "budgets"),
        (dict(budgets="user:u42"), "budgets"),
        (dict(budgets=[f"b{i}" for i in range(21)]), "budgets"),
        (dict(methods=["FETCH"]), "methods"),
        (dict(methods=[]), "methods"),
        (dict(methods="GET"), "methods"),
    ],
)
def test_mint_refuses_what_the_gateway_would(minter, kwargs, param):
    args = dict(vendor="stripe", allowed_endpoints=["/v1/payment_intents"])
    args.update(kwargs)
    with pytest.raises(MintError) as e:
        minter.mint(**args)
    assert e.value.param == param and isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"{param}: ")


def test_mint_accepts_the_limits(minter):
    key = minter.mint(
        "stripe", [f"/v1/x{i}" for i in range(100)], label="\U0001F600" * 100,
        metadata={f"k{i}": "v" * 500 for i in range(50)}, budgets=[f"b:{i}" for i in range(20)], methods=("get", "POST"),
    )
    assert key.methods == ["GET", "POST"] and len(key.allowed_endpoints) == 100


def test_mint_does_not_share_the_callers_objects(minter):
    endpoints, metadata = ["/v1/payment_intents"], {"user_id": "u42"}
    key = minter.mint("stripe", endpoints, metadata=metadata)
    endpoints.append("/v1/customers")
    metadata["user_id"] = "u43"
    assert key.allowed_endpoints == ["/v1/payment_intents"] and key.metadata == {"user_id": "u42"}


@pytest.mark.parametrize(
    "secret",
    [None, "", "klm_prod_M1nt1ngKeyTestVector0001_1_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "klm_test_M1nt1ngKeyTestVector0001_0_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "klm_test_short_1_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", VECTORS["secret"][:-1], "kl_dev_admin_token_0000"],
)
def test_bad_secrets_are_refused(monkeypatch, secret):
    monkeypatch.delenv("KEYLEASH_MINTING_KEY", raising=False)
    with pytest.raises(MintError) as e:
        Minter(secret)
    assert e.value.param == "secret" and (not secret or secret not in str(e.value))


def test_the_secret_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("KEYLEASH_MINTING_KEY", VECTORS["secret"] + "\n")  # as read from an env file
    assert Minter().minting_key_id == VECTORS["minting_key_id"]


# -- Flask and Celery in minting mode, offline -----------------------------------------------------


def test_flask_mints_per_request_without_the_control_api():
    flask = pytest.importorskip("flask")
    from keyleash.flask import KeyleashFlask, current_vault_key

    app = flask.Flask(__name__)
    app.config["KEYLEASH_PROXY_URL"] = "http://127.0.0.1:1"  # never called here; no API URL, no admin token
    KeyleashFlask(app, minter=Minter(VECTORS["secret"]), vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=25, metadata=lambda req: {"user_id": req.headers["X-User"]})

    @app.get("/whoami")
    def whoami():
        from keyleash.flask import proxy_session

        key = current_vault_key("stripe")
        return flask.jsonify(token=flask.g.vault_key, id=flask.g.vault_key_id, stripe_id=flask.g.stripe_vault_key_id, origin=key["origin"], proxy=proxy_session().proxy_url)

    with app.test_client() as c:
        a = c.get("/whoami", headers={"X-User": "u42"}).get_json()
        b = c.get("/whoami", headers={"X-User": "u43"}).get_json()
    assert a["id"] != b["id"] and a["id"] == a["stripe_id"] and a["origin"] == "minted" and a["proxy"] == "http://127.0.0.1:1"
    block = decode_minted_token(a["token"]).blocks[0]
    assert block["id"] == a["id"] and block["cap"] == 25_000_000 and block["exp"] - block["iat"] == 300
    assert block["label"] == "flask GET /whoami" and block["metadata"] == {"user_id": "u42"}


def test_flask_default_label_replaces_what_a_decoded_path_may_hold():
    flask = pytest.importorskip("flask")
    from keyleash.flask import KeyleashFlask

    app = flask.Flask(__name__)
    app.config["KEYLEASH_PROXY_URL"] = "http://127.0.0.1:1"
    KeyleashFlask(app, minter=Minter(VECTORS["secret"]), vendor="stripe", allowed_endpoints=["/v1/payment_intents"])

    @app.get("/<rest>")
    def anything(rest):
        return flask.jsonify(token=flask.g.vault_key)

    with app.test_client() as c:
        r = c.get("/k%0Ax%E2%80%AEy")
    assert r.status_code == 200
    assert decode_minted_token(r.get_json()["token"]).blocks[0]["label"] == "flask GET /k\ufffdx\ufffdy"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        (dict(allowed_endpoints=["v1/payment_intents"]), "allowed_endpoints.0"),
        (dict(mode="live"), "mode"),
        (dict(daily_usd_cap=-5), "daily_usd_cap"),
        (dict(label="x" * 201), "label"),
        (dict(vendor=None, allowed_endpoints=None, vendors={"stripe": {"allowed_endpoints": ["/v1/payment_intents"], "rate_limit": {"requests": 5, "per": "second"}}}), "rate_limit"),
    ],
)
def test_a_bad_minting_spec_fails_at_startup(kwargs, param):
    flask = pytest.importorskip("flask")
    from keyleash.flask import KeyleashFlask

    opts = dict(minter=Minter(VECTORS["secret"]), vendor="stripe", allowed_endpoints=["/v1/payment_intents"])
    opts.update(kwargs)
    with pytest.raises(MintError) as e:
        KeyleashFlask(flask.Flask(__name__), **opts)
    assert e.value.param == param


def test_celery_helpers_mint_with_a_minter():
    from keyleash.celery import current_vault_key, vault_key, with_vault_key

    minter = Minter(VECTORS["secret"])
    with vault_key(minter, "stripe", ["/v1/payment_intents"], daily_usd_cap=5) as key:
        assert current_vault_key() is key and key.origin == "minted"
        block = decode_minted_token(key.token).blocks[0]
        assert block["exp"] - block["iat"] == 30 * 60 and block["cap"] == 5_000_000
    assert current_vault_key() is None

    @with_vault_key(minter, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], label=lambda order: f"order-{order}", inject="vault_key")
    def task(order, vault_key=None):
        return vault_key

    assert task("42").label == "order-42" and task("42").id != task("42").id
    with pytest.raises(MintError):
        with_vault_key(minter, vendor="stripe", allowed_endpoints=["/v1/payment intents"])
