"""Vault keys minted locally from a minting key, and narrowed by whoever holds one.

Neither minting nor narrowing makes a network call or touches a file. The token format is
keyleash's (docs/minting.md): ``vk_<mode>_m1.`` then base64url JSON blocks joined by dots, closed
by an HMAC-SHA256 chain signature. The gateway verifies the chain on a key's first use and
enforces every caveat and the minting key's policy; the checks here only make sure nothing is
written that the gateway would refuse, or that claims more than the key it came from.

    from keyleash import Minter, narrow_key

    minter = Minter()                     # KEYLEASH_MINTING_KEY=klm_test_…
    key = minter.mint("stripe", ["/v1/payment_intents", "POST /v1/refunds"], daily_usd_cap=100)
    sub = narrow_key(key, allowed_endpoints=["POST /v1/refunds"], daily_usd_cap=5)
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import threading
import time
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Union

from . import VaultKey

__all__ = [
    "Minter",
    "MintError",
    "MintedToken",
    "narrow_key",
    "decode_minted_token",
    "usd_to_micros",
    "MAX_CHAIN_BLOCKS",
    "MAX_MINTED_TOKEN_CHARS",
]

#: The gateway's limits: a minted key and 15 narrowings, 8 KiB in all.
MAX_CHAIN_BLOCKS = 16
MAX_MINTED_TOKEN_CHARS = 8192

_SECRET_RE = re.compile(r"klm_(test|live)_([0-9A-Za-z]{24})_([1-9][0-9]{0,5})_([A-Za-z0-9_-]{43})")
_TOKEN_RE = re.compile(r"vk_(test|live)_m1\.((?:[A-Za-z0-9_-]+\.)+)([A-Za-z0-9_-]{43})")
_MINTING_KEY_ID_RE = re.compile(r"mk_[0-9A-Za-z]{24}")
_METADATA_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
_BUDGET_ID_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,100}")
_USD_RE = re.compile(r"(\d{1,12})(?:\.(\d{1,6}))?")
_TTL_RE = re.compile(r"([1-9][0-9]{0,8})([smhd])")
_METHOD_WORD_RE = re.compile(r"[A-Za-z]+")
_PATH_CHARS_RE = re.compile(r"[\x21-\x7e]*")
# C0, DEL, C1 and the bidirectional overrides and isolates: the gateway refuses them in labels and
# metadata (a token holding one fails as ``invalid_key``), so they are refused here, at mint time.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_REASON = "must not hold control characters (C0, DEL, C1) or bidirectional overrides"
#: What joins a narrowed key's label to its parent's, as the gateway records it.
LABEL_SEPARATOR = "/"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The gateway reads JSON numbers as doubles: a cap must stay exact there.
_MAX_SAFE_INT = 2**53 - 1

# Same text as JSON.stringify: no spaces, non-ASCII kept as UTF-8, no NaN.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class MintError(ValueError):
    """A mint or narrow call was given something the gateway would refuse; ``param`` names it."""

    def __init__(self, param: str, message: str):
        self.param = param
        super().__init__(f"{param}: {message}")


class MintedToken(NamedTuple):
    """A minted token's mode and blocks (the minted key's first), as written: unverified, since
    only the gateway can check the chain."""

    mode: str
    blocks: List[Dict[str, Any]]


# -- randomness ------------------------------------------------------------------------------------

# Ids come from a pool of CSPRNG bytes refilled 4 KiB at a time, so minting costs no syscall.
# bytes.translate maps bytes 0..247 onto the alphabet (248 = 4 * 62) and deletes 248..255:
# rejection sampling in one C call, every character uniform.
_BASE62_TABLE = bytes(_ALPHABET[b % 62] for b in range(248)) + bytes(8)
_REJECTED = bytes(range(248, 256))


class _RandomPool:
    def __init__(self, size: int = 4096):
        self._size = size
        self._reset()

    def _reset(self) -> None:
        # Also a new lock: after a fork, another thread of the parent may have held the old one.
        self._lock = threading.Lock()
        self._buf = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._buf):
                self._buf = os.urandom(self._size)
                self._at = 0
            out = self._buf[self._at : self._at + n]
            self._at += n
            return out


_pool = _RandomPool()
if hasattr(os, "register_at_fork"):
    # A forked worker (Celery prefork, gunicorn) must not reuse the bytes its parent still holds:
    # two processes would mint the same ids.
    os.register_at_fork(after_in_child=_pool._reset)


def _random_base62(n: int) -> str:
    out = b""
    while len(out) < n:
        out += _pool.take(n + 8).translate(_BASE62_TABLE, _REJECTED)
    return out[:n].decode("ascii")


# -- encoding --------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _segment(block: Mapping[str, Any]) -> str:
    return _b64(_json.encode(block).encode("utf-8"))


def _hmac(key: bytes, segment: str) -> bytes:
    # The MAC covers the base64url text, not the JSON it decodes to (docs/minting.md).
    return hmac.new(key, segment.encode("ascii"), hashlib.sha256).digest()


def _append(token: str, segment: str) -> str:
    """``token`` with one more block, signed by chaining from its signature."""
    cut = token.rindex(".")
    sig = _hmac(_unb64(token[cut + 1 :]), segment)
    return f"{token[:cut]}.{segment}.{_b64(sig)}"


def _usd(micros: Optional[int]) -> Union[int, float, None]:
    # As the API's JSON reads: whole dollars are ints.
    if micros is None:
        return None
    return micros // 1_000_000 if micros % 1_000_000 == 0 else micros / 1_000_000


def _iso(seconds: float) -> str:
    # The gateway's format (JavaScript's toISOString): milliseconds, "Z".
    ms = int(seconds * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


# -- validation ------------------------------------------------------------------------------------


def _js_len(value: str, param: str) -> int:
    """The length the gateway measures (UTF-16 code units)."""
    try:
        return len(value.encode("utf-16-le")) // 2
    except UnicodeEncodeError:
        raise MintError(param, "is not valid text (lone surrogate)") from None


def _short_text(value: Any, limit: int, param: str, what: str = "a string") -> str:
    if not isinstance(value, str) or _js_len(value, param) > limit:
        raise MintError(param, f"must be {what} of at most {limit} characters")
    return value


def _check_text(value: Any, limit: int, param: str) -> str:
    """A label or metadata value the gateway accepts: a short string without control characters."""
    _short_text(value, limit, param)
    if _CONTROL_RE.search(value):
        raise MintError(param, _CONTROL_REASON)
    return value


def clip_label(label: str, limit: int = 200) -> str:
    """``label`` cut to what a key may carry (used for labels made from request paths, which may
    decode to characters no label may hold: those become U+FFFD)."""
    label = _CONTROL_RE.sub("\ufffd", label)[:limit]
    while _js_len(label, "label") > limit:
        label = label[:-1]
    return label


def usd_to_micros(value: Union[int, float, str, Decimal], param: str = "daily_usd_cap") -> int:
    """USD (≥ 0, at most 6 decimals) to exact micro-dollars. A float is read through its repr
    (``0.1`` is ``"0.1"``), never through binary arithmetic."""
    if isinstance(value, bool):
        raise MintError(param, "must be a USD amount, not a bool")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        try:
            amount = Decimal(repr(value))
        except InvalidOperation:
            raise MintError(param, "must be a finite USD amount") from None
    elif isinstance(value, str):
        m = _USD_RE.fullmatch(value)
        if m is None:
            raise MintError(param, "must be a decimal USD amount ≥ 0 with at most 6 decimals")
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    else:
        raise MintError(param, "must be a USD amount (int, float, decimal string or Decimal)")
    if not amount.is_finite() or amount < 0:
        raise MintError(param, "must be a finite USD amount ≥ 0")
    micros = amount.scaleb(6)
    if micros != micros.to_integral_value():
        raise MintError(param, "has more than 6 decimals (micro-dollars)")
    if micros > _MAX_SAFE_INT:
        raise MintError(param, "is too large")
    return int(micros)


def _ttl_seconds(value: Union[str, int, float, timedelta], param: str) -> int:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0 or value > _MAX_SAFE_INT:
            raise MintError(param, "must be a positive whole number of seconds")
        return value
    m = _TTL_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise MintError(param, 'must look like "30s", "5m", "1h" or "1d", or be a whole number of seconds')
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def _pattern_error(p: Any) -> Optional[str]:
    """Why the gateway would refuse the endpoint pattern, or None (policy/endpoints.ts)."""
    if not isinstance(p, str) or not p:
        return "must be a non-empty string"
    if len(p) > 512:
        return "is longer than 512 characters"
    path = p
    if not p.startswith("/"):
        word, _, path = p.partition(" ")
        if not _METHOD_WORD_RE.fullmatch(word) or word.upper() not in _METHODS:
            return f'must be "/path" or "METHOD /path" with METHOD one of {", ".join(_METHODS)}'
    if not path.startswith("/"):
        return 'must have its path start with "/" (one space after the method)'
    if not _PATH_CHARS_RE.fullmatch(path):
        return "has whitespace, control or non-ASCII characters in its path"
    if any(c in path for c in "?%#\\;"):
        return 'cannot hold "?", "%", "#", "\\" or ";" (write the path decoded, without a query)'
    for seg in ([] if path == "/" else path[1:].split("/")):
        if seg in ("", ".", ".."):
            return "has an empty or dot segment"
        if seg != "*" and "*" in seg:
            return f'has "*" inside a segment ("{seg}"); "*" stands for one whole segment'
    return None


# Patterns already found valid: a Flask or Celery spec mints with the same list every time.
_valid_patterns: set = set()


def _check_endpoints(value: Any, param: str) -> List[str]:
    if not isinstance(value, (list, tuple)) and (isinstance(value, str) or not isinstance(value, Iterable)):
        raise MintError(param, "must be a list of path patterns")
    patterns = list(value)
    if not 1 <= len(patterns) <= 100:
        raise MintError(param, "must hold 1-100 path patterns")
    for i, p in enumerate(patterns):
        if p.__class__ is str and p in _valid_patterns:
            continue
        err = _pattern_error(p)
        if err:
            raise MintError(f"{param}.{i}", err)
        if len(_valid_patterns) < 10_000:
            _valid_patterns.add(p)
    return patterns


def _check_methods(value: Any) -> List[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise MintError("methods", f"must be a list of {', '.join(_METHODS)}")
    methods = [m.upper() if isinstance(m, str) else m for m in value]
    if not methods or any(m not in _METHODS for m in methods):
        raise MintError("methods", f"must be a non-empty list of {', '.join(_METHODS)}")
    return list(dict.fromkeys(methods))


def _check_metadata(value: Any) -> Dict[str, str]:
    if not isinstance(value, dict) and not isinstance(value, Mapping):
        raise MintError("metadata", "must be a mapping of strings to strings")
    if len(value) > 50:
        raise MintError("metadata", "may hold at most 50 pairs")
    for k, v in value.items():
        if not isinstance(k, str) or not _METADATA_KEY_RE.fullmatch(k):
            raise MintError(f"metadata.{k}", "keys are 1-40 of A-Z a-z 0-9 _ . : -")
        _check_text(v, 500, f"metadata.{k}")
    return dict(value)


def _check_budgets(value: Any) -> List[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise MintError("budgets", "must be a list of budget ids")
    budgets = list(value)
    if len(budgets) > 20 or not all(isinstance(b, str) and _BUDGET_ID_RE.fullmatch(b) for b in budgets):
        raise MintError("budgets", "must be a list of at most 20 budget ids (A-Z a-z 0-9 _ . : @ -)")
    return budgets


def _split_pattern(p: str):
    if p.startswith("/"):
        method, path = None, p
    else:
        word, _, path = p.partition(" ")
        method = word.upper()
    return method, ([] if path == "/" else path[1:].split("/"))


def _covers(outer: str, inner: str) -> bool:
    """Every request ``inner`` matches is matched by ``outer``."""
    om, osegs = _split_pattern(outer)
    im, isegs = _split_pattern(inner)
    if om is not None and om != im:
        return False
    return len(osegs) == len(isegs) and all(o == "*" or o == i for o, i in zip(osegs, isegs))


# -- minting ---------------------------------------------------------------------------------------


class Minter:
    """Mints vault keys locally from a minting key's secret (``klm_…``, shown once when the
    minting key was created or rotated). ``secret`` defaults to ``KEYLEASH_MINTING_KEY``.

    ``clock`` (unix seconds, default ``time.time``) is what ``iat``/``exp`` are counted from.
    A Minter holds no state beyond its secret: share one across threads.
    """

    def __init__(self, secret: Optional[str] = None, *, clock: Callable[[], float] = time.time, policy: Optional[Mapping[str, Any]] = None):
        """``policy``: the minting key as the API sent it (``max_daily_cap_micros``, ``max_ttl``),
        when known (``MintingKey.minter()`` passes it). Then minted keys report the scope the
        gateway enforces: it clamps a key that asks for a higher cap (or none) or a longer TTL."""
        if secret is None:
            secret = os.environ.get("KEYLEASH_MINTING_KEY")
        m = _SECRET_RE.fullmatch(secret.strip()) if isinstance(secret, str) else None
        if m is None:
            raise MintError("secret", "is not a keyleash minting key secret (klm_test_… or klm_live_…; KEYLEASH_MINTING_KEY)")
        self.mode: str = m.group(1)
        self.minting_key_id: str = f"mk_{m.group(2)}"
        #: The secret's version: rotating the minting key makes a new one.
        self.version: int = int(m.group(3))
        self._mac = hmac.new(_unb64(m.group(4)), digestmod=hashlib.sha256)
        self._id_prefix = f"mkey_{m.group(2)}_"
        self._head = f"vk_{self.mode}_m1."
        self._clock = clock
        self._max_cap: Optional[int] = (policy or {}).get("max_daily_cap_micros")
        self._max_ttl: Optional[int] = (policy or {}).get("max_ttl")

    def __repr__(self) -> str:  # never print the secret
        return f"Minter(minting_key_id={self.minting_key_id!r}, version={self.version}, mode={self.mode!r})"

    def mint(
        self,
        vendor: str,
        allowed_endpoints: Iterable[str],
        daily_usd_cap: Union[int, float, str, Decimal, None] = None,
        expires_in: Union[str, int, timedelta] = "15m",
        label: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        budgets: Optional[Iterable[str]] = None,
        methods: Optional[Iterable[str]] = None,
    ) -> VaultKey:
        """A new vault key with its own id; nothing is sent anywhere.

        ``allowed_endpoints`` is intersected with the minting key's by the gateway.
        ``daily_usd_cap`` (USD per UTC day) omitted or None: the minting key's maximum, if any.
        ``expires_in``: ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or seconds (the minting key's
        ``max_ttl`` still applies). ``budgets``: budgets beyond the minting key's own the key
        also counts against. ``methods``: only these methods, on top of the patterns.
        """
        _short_text(vendor, 64, "vendor", "a vendor name")
        if not vendor:
            raise MintError("vendor", "must be a vendor name")
        endpoints = _check_endpoints(allowed_endpoints, "allowed_endpoints")
        cap = None if daily_usd_cap is None else usd_to_micros(daily_usd_cap)
        now = self._clock()
        iat = math.floor(now)
        exp = iat + _ttl_seconds(expires_in, "expires_in")
        key_id = self._id_prefix + _random_base62(24)
        # The field order of docs/minting.md; the gateway does not care, people reading tokens do.
        block: Dict[str, Any] = {
            "mk": self.minting_key_id,
            "kv": self.version,
            "id": key_id,
            "mode": self.mode,
            "vendor": vendor,
            "endpoints": endpoints,
        }
        if methods is not None:
            block["methods"] = methods = _check_methods(methods)
        if cap is not None:
            block["cap"] = cap
        block["iat"] = iat
        block["exp"] = exp
        if label is not None:
            block["label"] = _check_text(label, 200, "label")
        if metadata is not None:
            block["metadata"] = metadata = _check_metadata(metadata)
        if budgets is not None:
            block["budgets"] = budgets = _check_budgets(budgets)
        segment = _segment(block)
        # What the gateway will enforce (it clamps rather than refuses); the token is unchanged.
        if self._max_cap is not None and (cap is None or cap > self._max_cap):
            cap = self._max_cap
        if self._max_ttl:
            exp = min(exp, iat + int(self._max_ttl))
        return VaultKey(
            object="vault_key",
            origin="minted",
            id=key_id,
            token=f"{self._head}{segment}.{self._sign(segment)}",
            label=label or "",
            vendor=vendor,
            mode=self.mode,
            allowed_endpoints=list(endpoints),
            methods=methods,
            daily_usd_cap=_usd(cap),
            daily_cap_micros=cap,
            metadata=dict(metadata or {}),
            budgets=list(budgets or []),
            status="active",
            created_at=_iso(iat),
            expires_at=_iso(exp),
            minting_key_id=self.minting_key_id,
            parent_id=None,
        )

    def _sign(self, segment: str) -> str:
        mac = self._mac.copy()  # the secret's key schedule is computed once, in __init__
        mac.update(segment.encode("ascii"))
        return _b64(mac.digest())


def _mint_entry(minter: Minter, name: str, spec: Mapping[str, Any], **defaults: Any) -> VaultKey:
    """Mints the key of one ``vendors`` entry of the Flask/Celery helpers (an entry's own values
    win over ``defaults``)."""
    spec = dict(spec)
    default_mode = defaults.pop("mode", None)
    mode = spec.pop("mode", default_mode)
    if mode is not None and mode != minter.mode:
        raise MintError("mode", f"the minting key mints {minter.mode} keys, not {mode}")
    if "rate_limit" in spec:
        raise MintError("rate_limit", "minted keys have no per-key rate limit (give them a budget with one)")
    kwargs = {k: spec.pop(k, v) for k, v in defaults.items()}
    return minter.mint(vendor=spec.pop("vendor", name), allowed_endpoints=spec.pop("allowed_endpoints", None), **kwargs, **spec)


# -- reading and narrowing -------------------------------------------------------------------------


def decode_minted_token(token: str) -> MintedToken:
    """The mode and blocks of a minted token. Raises ``MintError`` for anything that is not one."""
    m = _TOKEN_RE.fullmatch(token) if isinstance(token, str) and len(token) <= MAX_MINTED_TOKEN_CHARS else None
    if m is None:
        raise MintError("token", "is not a minted vault key (vk_test_m1.… or vk_live_m1.…)")
    blocks = []
    for segment in m.group(2)[:-1].split("."):
        try:
            block = json.loads(_unb64(segment).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise MintError("token", "has a block that is not base64url JSON") from None
        if not isinstance(block, dict):
            raise MintError("token", "has a block that is not a JSON object")
        blocks.append(block)
    return MintedToken(m.group(1), blocks)


def narrow_key(
    parent: Union[str, Mapping[str, Any]],
    allowed_endpoints: Optional[Iterable[str]] = None,
    methods: Optional[Iterable[str]] = None,
    daily_usd_cap: Union[int, float, str, Decimal, None] = None,
    expires_in: Union[str, int, timedelta, None] = None,
    label: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
    *,
    clock: Callable[[], float] = time.time,
) -> VaultKey:
    """A narrower key from a minted one you hold (its token, or the key): caveats that can only
    take rights away, a new id, no minting secret and no network call. Its spend also counts
    against every key it came from.

    ``allowed_endpoints``: each pattern must fall within one the key has. ``methods``: a subset
    of the key's. ``daily_usd_cap``: at most the key's. ``expires_in``: a later expiry than the
    key's is cut to it. ``label`` is the new key's own part: the key's label is the parent's, a
    ``/``, then ``label`` (``/label`` under an unlabelled parent), as the gateway records it;
    omitted, the parent's. ``metadata`` is added to the parent's, whose pairs cannot change.
    Asking for more raises ``MintError``.
    """
    token = parent if isinstance(parent, str) else parent.get("token") if isinstance(parent, Mapping) else None
    if not isinstance(token, str):
        raise MintError("parent", "must be a minted key's token, or a minted key holding one")
    mode, blocks = decode_minted_token(token)
    if len(blocks) >= MAX_CHAIN_BLOCKS:
        raise MintError("token", f"is already narrowed {MAX_CHAIN_BLOCKS - 1} times")
    root = blocks[0]
    mk = root.get("mk")
    if not isinstance(mk, str) or not _MINTING_KEY_ID_RE.fullmatch(mk) or not isinstance(root.get("exp"), int) or not isinstance(root.get("endpoints"), list):
        raise MintError("token", "does not start with a minted key's block")

    # What the chain so far claims (the gateway may grant less, never more).
    endpoints: List[str] = root["endpoints"]
    have_methods: Optional[List[str]] = root.get("methods")
    cap: Optional[int] = root.get("cap")
    exp: int = root["exp"]
    cur_label: str = root.get("label") or ""
    meta: Dict[str, str] = dict(root.get("metadata") or {})
    for b in blocks[1:]:
        if b.get("endpoints"):
            endpoints = b["endpoints"]
        if b.get("methods"):
            have_methods = b["methods"]
        if isinstance(b.get("cap"), int):
            cap = b["cap"] if cap is None else min(cap, b["cap"])
        if isinstance(b.get("exp"), int):
            exp = min(exp, b["exp"])
        if isinstance(b.get("label"), str):
            # As the gateway records it: each narrowing's label is appended to its parent's.
            cur_label = f"{cur_label}{LABEL_SEPARATOR}{b['label']}"
        if isinstance(b.get("metadata"), dict):
            meta = {**b["metadata"], **meta}

    key_id = f"mkey_{mk[3:]}_{_random_base62(24)}"
    block: Dict[str, Any] = {"id": key_id}
    if allowed_endpoints is not None:
        wanted = _check_endpoints(allowed_endpoints, "allowed_endpoints")
        held = [e for e in endpoints if _pattern_error(e) is None]
        for i, w in enumerate(wanted):
            if not any(_covers(e, w) for e in held):
                raise MintError(f"allowed_endpoints.{i}", f'"{w}" is outside the key\'s endpoints')
        block["endpoints"] = endpoints = wanted
    if methods is not None:
        wanted = _check_methods(methods)
        if have_methods and any(m not in have_methods for m in wanted):
            raise MintError("methods", "asks for a method the key does not have")
        block["methods"] = have_methods = wanted
    if daily_usd_cap is not None:
        micros = usd_to_micros(daily_usd_cap)
        if cap is not None and micros > cap:
            raise MintError("daily_usd_cap", "is higher than the key's own cap")
        block["cap"] = cap = micros
    now = clock()
    if expires_in is not None:
        want = math.floor(now) + _ttl_seconds(expires_in, "expires_in")
        if want < exp:
            block["exp"] = exp = want
    if label is not None:
        block["label"] = _check_text(label, 200, "label")
        cur_label = f"{cur_label}{LABEL_SEPARATOR}{label}"
    if metadata is not None:
        add = _check_metadata(metadata)
        for k, v in add.items():
            if k in meta and meta[k] != v:
                raise MintError(f"metadata.{k}", "is set by the parent key and cannot change")
        block["metadata"] = add
        meta = {**add, **meta}

    child = _append(token, _segment(block))
    if len(child) > MAX_MINTED_TOKEN_CHARS:
        raise MintError("token", f"would be longer than {MAX_MINTED_TOKEN_CHARS} characters")
    return VaultKey(
        object="vault_key",
        origin="minted",
        id=key_id,
        token=child,
        label=cur_label,
        vendor=root.get("vendor"),
        mode=mode,
        allowed_endpoints=list(endpoints),
        methods=None if have_methods is None else list(have_methods),
        daily_usd_cap=_usd(cap),
        daily_cap_micros=cap,
        metadata=meta,
        budgets=list(root.get("budgets") or []),
        status="active",
        created_at=_iso(now),
        expires_at=_iso(exp),
        minting_key_id=mk,
        parent_id=blocks[-1].get("id"),
    )
