"""keyleash: client for the keyleash gateway's control API and proxy.

Standard library + ``requests``. See README.md for the quick start.
"""
from __future__ import annotations

import contextvars
import json
import math
import os
import random
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Union

import requests

__all__ = [
    "Keyleash",
    "VaultKey",
    "MintingKey",
    "ProxySession",
    "Minter",
    "MintError",
    "MintedToken",
    "narrow_key",
    "decode_minted_token",
    "usd_to_micros",
    "KeyleashError",
    "UnauthorizedError",
    "InvalidRequestError",
    "KeyNotFoundError",
    "MintingKeyNotFoundError",
    "BudgetNotFoundError",
    "BudgetExistsError",
    "BudgetInUseError",
    "BudgetFrozenError",
    "PolicyViolationError",
    "IdempotencyKeyReusedError",
    "InvalidKeyError",
    "KeyExpiredError",
    "KeyRevokedError",
    "EndpointNotAllowedError",
    "CostUnknownError",
    "CapExhaustedError",
    "RateLimitedError",
    "UpstreamError",
    "KeyleashConnectionError",
    "NoVaultKeyError",
    "error_from_response",
    "keyleash_error_code",
    "is_key_expired",
    "is_key_revoked",
    "is_endpoint_not_allowed",
    "is_keyleash_unavailable",
    "is_keyleash_error_body",
    "is_cap_exhausted",
    "ttl_for_timeout",
]

__version__ = "0.1.0"


# ---------------------------------------------------------------------------------------------
# Errors: every keyleash answer that is an error has a top-level ``code`` (docs/errors.md).


class KeyleashError(Exception):
    """An error keyleash answered with. Branch on ``code`` (or the subclass)."""

    def __init__(self, status: int, body: Mapping[str, Any]):
        self.status = status
        self.body = dict(body)
        self.code: str = str(body.get("code", ""))
        self.message: str = str(body.get("message", self.code))
        self.param: Optional[str] = body.get("param")
        self.request_id: Optional[str] = body.get("request_id")
        super().__init__(f"{self.code}: {self.message}" if self.message != self.code else self.code)


class UnauthorizedError(KeyleashError):
    """Control API: bad or missing admin token (401 ``unauthorized``)."""


class InvalidRequestError(KeyleashError):
    """Control API: bad input (400 ``invalid_request`` / ``invalid_json`` / ``mode_unavailable``)."""


class KeyNotFoundError(KeyleashError):
    """Control API: no key with that id (404 ``key_not_found``)."""


class MintingKeyNotFoundError(KeyleashError):
    """Control API: no minting key with that id (404 ``minting_key_not_found``)."""


class BudgetNotFoundError(KeyleashError):
    """Control API: no budget with that id (404 ``budget_not_found``)."""


class BudgetExistsError(KeyleashError):
    """Control API: a budget with that id already exists (409 ``budget_exists``)."""


class BudgetInUseError(KeyleashError):
    """Control API: an active key is attached to the budget, so it cannot be deleted (409 ``budget_in_use``)."""


class BudgetFrozenError(KeyleashError):
    """403 ``budget_frozen``: from the proxy, one of the key's budgets is frozen; from the control
    API, no key can be issued against a frozen budget. ``budget_id`` names it."""

    @property
    def budget_id(self) -> Optional[str]:
        return self.body.get("budget")


class PolicyViolationError(KeyleashError):
    """Control API: the admin token's policy does not allow this (403 ``policy_violation``; ``param`` names the field)."""


class IdempotencyKeyReusedError(KeyleashError):
    """Proxy: 400 ``idempotency_key_reused``: this key already used that ``Idempotency-Key`` for a different request."""


class InvalidKeyError(KeyleashError):
    """Proxy: 401 ``invalid_key``."""


class KeyExpiredError(KeyleashError):
    """Proxy: 401 ``key_expired``."""


class KeyRevokedError(KeyleashError):
    """Proxy: 401 ``key_revoked``."""


class EndpointNotAllowedError(KeyleashError):
    """Proxy: 403 ``endpoint_not_allowed``."""


class CostUnknownError(KeyleashError):
    """Proxy: 403 ``cost_unknown``."""


class CapExhaustedError(KeyleashError):
    """Proxy: 429 ``cap_exhausted``: the call would take the key's daily cap, or one of its
    budgets, past its limit (``limit`` / ``budget_id`` say which). Not retryable today."""

    @property
    def limit(self) -> Any:
        """``"key"`` for the key's daily cap, ``{"kind": "budget", "id", "period", "window"}`` for a budget."""
        return self.body.get("limit")

    @property
    def budget_id(self) -> Optional[str]:
        """The id of the budget that refused the call; None when it was the key's own cap."""
        lim = self.body.get("limit")
        return lim.get("id") if isinstance(lim, dict) and lim.get("kind") == "budget" else None

    @property
    def cost_usd(self) -> Optional[float]:
        return self.body.get("cost_usd")

    @property
    def remaining_usd(self) -> Optional[float]:
        return self.body.get("remaining_usd")


class RateLimitedError(KeyleashError):
    """Proxy: 429 ``rate_limited``; wait ``retry_after`` seconds. ``limit`` is ``{"kind": "key" | "budget", "id"}``."""

    retry_after: Optional[float] = None

    @property
    def limit(self) -> Optional[Dict[str, Any]]:
        lim = self.body.get("limit")
        return lim if isinstance(lim, dict) else None


class UpstreamError(KeyleashError):
    """Proxy: 502 ``upstream_error`` / 504 ``upstream_timeout``."""


class KeyleashConnectionError(KeyleashError):
    """keyleash could not be reached or did not answer in time (status 0, code ``connection_error`` / ``timeout``):
    the control API when issuing, or the proxy (``ProxySession``) when calling through it."""


class NoVaultKeyError(RuntimeError):
    """Code asked for this request's or task's vault key where there is none: issuing failed with
    ``fail_open`` on, the path was skipped, or vault keys are turned off."""


#: Codes only keyleash's proxy sends (none collides with a vendor's own error codes).
_PROXY_CODES = frozenset(
    {
        "invalid_key", "key_expired", "key_revoked", "endpoint_not_allowed", "cost_unknown", "cap_exhausted",
        "budget_frozen", "idempotency_key_reused", "invalid_amount", "invalid_body", "body_too_large", "store_unavailable",
    }
)


_BY_CODE = {
    "unauthorized": UnauthorizedError,
    "invalid_request": InvalidRequestError,
    "invalid_json": InvalidRequestError,
    "mode_unavailable": InvalidRequestError,
    "key_not_found": KeyNotFoundError,
    "minting_key_not_found": MintingKeyNotFoundError,
    "budget_not_found": BudgetNotFoundError,
    "budget_exists": BudgetExistsError,
    "budget_in_use": BudgetInUseError,
    "budget_frozen": BudgetFrozenError,
    "policy_violation": PolicyViolationError,
    "idempotency_key_reused": IdempotencyKeyReusedError,
    "invalid_key": InvalidKeyError,
    "key_expired": KeyExpiredError,
    "key_revoked": KeyRevokedError,
    "endpoint_not_allowed": EndpointNotAllowedError,
    "cost_unknown": CostUnknownError,
    "cap_exhausted": CapExhaustedError,
    "rate_limited": RateLimitedError,
    "upstream_error": UpstreamError,
    "upstream_timeout": UpstreamError,
}


def is_keyleash_error_body(body: Any) -> bool:
    """True when a parsed JSON body is keyleash's own error, not the vendor's."""
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return False
    err = body.get("error")
    return (isinstance(err, dict) and err.get("type") == "keyleash_error") or isinstance(body.get("request_id"), str)


def error_from_response(resp: requests.Response) -> Optional[KeyleashError]:
    """The typed error for a keyleash error answer, or None (success, or the vendor's own error)."""
    if resp.ok:
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    if not is_keyleash_error_body(body):
        return None
    cls = _BY_CODE.get(body["code"], KeyleashError)
    err = cls(resp.status_code, body)
    if isinstance(err, RateLimitedError):
        try:
            err.retry_after = float(resp.headers.get("Retry-After", ""))
        except ValueError:
            err.retry_after = None
    return err


def keyleash_error_code(err: Any) -> Optional[str]:
    """keyleash's error code carried by any error or response, or None (success, or the vendor's
    own error such as Stripe's 402): a ``KeyleashError``, a proxy ``requests.Response`` (or a
    ``requests.HTTPError`` holding one), or the official ``stripe`` or ``twilio`` package's error
    for keyleash's answer (``stripe`` keeps the code only in ``json_body`` for 401 and 429)."""
    if isinstance(err, KeyleashError):
        return err.code
    if isinstance(err, requests.Response):
        e = error_from_response(err)
        return e.code if e is not None else None
    resp = getattr(err, "response", None)
    if isinstance(resp, requests.Response):
        e = error_from_response(resp)
        if e is not None:
            return e.code
    for attr in ("json_body", "body", "details"):
        body = getattr(err, attr, None)
        if isinstance(body, dict) and is_keyleash_error_body(body):
            return body["code"]
    code = getattr(err, "code", None)
    if isinstance(code, str) and code in _PROXY_CODES:
        return code
    return None


def is_cap_exhausted(err_or_response: Any) -> bool:
    """True for a spent cap (429 ``cap_exhausted``), whatever raised it: ``CapExhaustedError``, a
    proxy response, or the ``stripe`` / ``twilio`` package's error. Answer it with your own 402."""
    return keyleash_error_code(err_or_response) == "cap_exhausted"


def is_key_expired(err_or_response: Any) -> bool:
    """True when the vault key is past its TTL (401 ``key_expired``): issue a new one."""
    return keyleash_error_code(err_or_response) == "key_expired"


def is_key_revoked(err_or_response: Any) -> bool:
    """True when the vault key was revoked (401 ``key_revoked``): stop, do not retry with it."""
    return keyleash_error_code(err_or_response) == "key_revoked"


def is_endpoint_not_allowed(err_or_response: Any) -> bool:
    """True when the key may not call that method and path (403 ``endpoint_not_allowed``)."""
    return keyleash_error_code(err_or_response) == "endpoint_not_allowed"


def is_keyleash_unavailable(err: Any) -> bool:
    """True when keyleash could not be reached: ``KeyleashConnectionError`` (control API or
    ``ProxySession``), or the ``stripe`` package's ``APIConnectionError`` for a call sent to the proxy."""
    if isinstance(err, KeyleashConnectionError):
        return True
    return any(c.__name__ == "APIConnectionError" for c in type(err).__mro__)


def ttl_for_timeout(timeout_seconds: float, margin: float = 0.2) -> int:
    """A key TTL (seconds) that covers a task: its timeout plus ``margin`` (20 % by default)."""
    return int(math.ceil(timeout_seconds * (1 + margin)))


# ---------------------------------------------------------------------------------------------


class _ApiObject(dict):
    """An object as the API sends it (a dict), with attribute access to its fields."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class VaultKey(_ApiObject):
    """A key as the API sends it (a dict), with attribute access: ``key.id``, ``key.token``."""

    @property
    def token(self) -> Optional[str]:  # only in the answer to issuing
        return self.get("token")

    def __repr__(self) -> str:  # never print the secret
        shown = {k: ("vk_…" if k == "token" else v) for k, v in self.items()}
        return f"VaultKey({shown!r})"


class MintingKey(_ApiObject):
    """A minting key as the API sends it (a dict), with attribute access: ``mk.id``, ``mk.secret``.

    ``secret`` (``klm_…``) is only in the answers to creating and rotating; ``minter()`` mints with it.
    """

    @property
    def secret(self) -> Optional[str]:
        return self.get("secret")

    def minter(self, **kwargs: Any) -> "Minter":
        """A ``Minter`` for this answer's secret (only the answers to create and rotate hold one)."""
        if not self.get("secret"):
            raise ValueError("keyleash: this minting key holds no secret (it is shown only when it is created or rotated)")
        kwargs.setdefault("policy", self)
        return Minter(self["secret"], **kwargs)

    def __repr__(self) -> str:  # never print the secret
        shown = {k: ("klm_…" if k == "secret" else v) for k, v in self.items()}
        return f"MintingKey({shown!r})"


class ProxySession(requests.Session):
    """A ``requests.Session`` that calls the keyleash proxy with one vault key.

    Paths are relative to the proxy (``/stripe/v1/payment_intents`` or ``/v1/payment_intents``).
    keyleash's own refusals raise the typed error (``CapExhaustedError`` …); the vendor's own
    errors (e.g. Stripe's 402) come back as responses. ``raise_keyleash_errors=False`` turns that off.
    """

    def __init__(self, proxy_url: str, token: str, raise_keyleash_errors: bool = True, timeout: float = 30.0):
        super().__init__()
        self.proxy_url = proxy_url.rstrip("/")
        self.raise_keyleash_errors = raise_keyleash_errors
        self.default_timeout = timeout
        self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if url.startswith("/"):
            url = self.proxy_url + url
        kwargs.setdefault("timeout", self.default_timeout)
        try:
            resp = super().request(method, url, *args, **kwargs)
        except requests.Timeout as e:
            raise KeyleashConnectionError(0, {"code": "timeout", "message": f"keyleash proxy did not answer {method} {_path_of(url)} in time"}) from e
        except requests.ConnectionError as e:
            # Also a proxy that died mid-request. The message names no host or port.
            raise KeyleashConnectionError(0, {"code": "connection_error", "message": f"keyleash proxy unreachable ({method} {_path_of(url)})"}) from e
        if self.raise_keyleash_errors:
            err = error_from_response(resp)
            if err is not None:
                raise err
        return resp


_UNSET: Any = object()


def _path_of(url: str) -> str:
    return requests.utils.urlparse(url).path or "/"


#: Control API answers worth retrying: rate limited, or the gateway or its store briefly away.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


def _every_page(list_page: Callable[[Optional[str]], Dict[str, Any]]) -> Iterator[Any]:
    """Every item of a list route, following ``next_cursor`` page after page."""
    cursor = None
    while True:
        page = list_page(cursor)
        yield from page["data"]
        if not page.get("has_more") or not page.get("next_cursor"):
            return
        cursor = page["next_cursor"]


def _budget_path(budget_id: str) -> str:
    return f"/v1/budgets/{requests.utils.quote(budget_id, safe='')}"


def _minting_key_path(minting_key_id: str) -> str:
    return f"/v1/minting_keys/{requests.utils.quote(minting_key_id, safe='')}"


def _token_of(key: Union[VaultKey, str]) -> str:
    return key if isinstance(key, str) else key["token"]


class Keyleash:
    """Client for the control API (issue, read, list, revoke, kill switch, budgets, minting keys,
    audit) and the proxy. Minting itself is offline: see ``Minter``.

    Defaults come from ``KEYLEASH_API_URL``, ``KEYLEASH_PROXY_URL`` and ``KEYLEASH_ADMIN_TOKEN``.
    """

    def __init__(
        self,
        api_url: Optional[str] = None,
        proxy_url: Optional[str] = None,
        admin_token: Optional[str] = None,
        timeout: float = 10.0,
        session: Optional[requests.Session] = None,
        max_retries: int = 2,
    ):
        """``max_retries``: retries of a control API call that could not reach keyleash or got
        429/502/503/504, with exponential backoff from 0.1 s (or ``Retry-After``, up to 2 s). Only
        calls safe to repeat are retried: reads, revocations and issuance (which sends an
        ``Idempotency-Key``, so a retry answers the key already issued)."""
        api_url = api_url or os.environ.get("KEYLEASH_API_URL")
        proxy_url = proxy_url or os.environ.get("KEYLEASH_PROXY_URL")
        admin_token = admin_token or os.environ.get("KEYLEASH_ADMIN_TOKEN")
        if not api_url:
            raise ValueError("keyleash: api_url (or KEYLEASH_API_URL) is required")
        if not proxy_url:
            raise ValueError("keyleash: proxy_url (or KEYLEASH_PROXY_URL) is required")
        if not admin_token:
            raise ValueError("keyleash: admin_token (or KEYLEASH_ADMIN_TOKEN) is required")
        self.api_url = api_url.rstrip("/")
        self.proxy_url = proxy_url.rstrip("/")
        self._admin_token = admin_token
        self.timeout = timeout
        self.max_retries = max_retries
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"Keyleash(api_url={self.api_url!r}, proxy_url={self.proxy_url!r})"

    # -- control API ---------------------------------------------------------------------------

    def issue_key(
        self,
        vendor: str,
        allowed_endpoints: list,
        daily_usd_cap: Optional[float] = None,
        expires_in: Union[str, int, None] = None,
        label: Optional[str] = None,
        mode: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        budgets: Optional[Iterable[str]] = None,
        rate_limit: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
    ) -> VaultKey:
        """Issues a vault key (the API answers 201). ``key.token`` is only in this answer.

        Sent with ``Idempotency-Key`` (``idempotency_key``, else a fresh UUID reused by this
        call's retries): a retry after a lost answer gets the key already issued, never a second.
        ``timeout`` bounds the whole call, retries included.

        ``budgets``: budget ids every call of the key also reserves against (each must exist and not
        be frozen). ``rate_limit``: ``{"requests": N, "per": "second" | "minute" | "hour"}``.
        """
        body: Dict[str, Any] = {"vendor": vendor, "allowed_endpoints": list(allowed_endpoints)}
        if daily_usd_cap is not None:
            body["daily_usd_cap"] = daily_usd_cap
        if expires_in is not None:
            body["expires_in"] = expires_in
        if label is not None:
            body["label"] = label[:200]
        if mode is not None:
            body["mode"] = mode
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if budgets is not None:
            body["budgets"] = list(budgets)
        if rate_limit is not None:
            body["rate_limit"] = dict(rate_limit)
        return VaultKey(self._call("POST", "/v1/keys", body, timeout=timeout, idempotency_key=idempotency_key or str(uuid.uuid4())))

    def get_key(self, key_id: str) -> VaultKey:
        """A key with its spend today, remaining cap, status and request count."""
        return VaultKey(self._call("GET", f"/v1/keys/{requests.utils.quote(key_id, safe='')}"))

    def list_keys(
        self,
        status: Optional[str] = None,
        vendor: Optional[str] = None,
        mode: Optional[str] = None,
        label_prefix: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Dict[str, Any]:
        """One page: ``{"object": "list", "data": [...], "has_more", "next_cursor"}``, newest first."""
        params = []
        for name, value in (("status", status), ("vendor", vendor), ("mode", mode), ("label_prefix", label_prefix), ("limit", limit), ("cursor", cursor)):
            if value is not None:
                params.append((name, str(value)))
        for k, v in (metadata or {}).items():
            params.append((f"metadata[{k}]", v))
        page = self._call("GET", "/v1/keys", params=params)
        page["data"] = [VaultKey(k) for k in page.get("data", [])]
        return page

    def iter_keys(self, **filters: Any) -> Iterator[VaultKey]:
        """Every key matching the filters, page after page."""
        return _every_page(lambda c: self.list_keys(cursor=c, **filters))

    def revoke_key(self, key_id: str, missing_ok: bool = False, timeout: Optional[float] = None) -> Optional[VaultKey]:
        """Revokes a key (idempotent). An unknown id raises ``KeyNotFoundError`` unless ``missing_ok``."""
        try:
            return VaultKey(self._call("DELETE", f"/v1/keys/{requests.utils.quote(key_id, safe='')}", timeout=timeout))
        except KeyNotFoundError:
            if missing_ok:
                return None
            raise

    def revoke_keys(
        self,
        label_prefix: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        vendor: Optional[str] = None,
        mode: Optional[str] = None,
        dry_run: bool = False,
        all: bool = False,
        budget: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The kill switch (``POST /v1/keys/revoke``): revokes every active key matching the filter
        (``budget``: the keys attached to that budget).

        Returns ``{"matched", "revoked", ...}``. ``dry_run`` only counts; no filter needs ``all=True``.
        """
        body: Dict[str, Any] = {}
        if label_prefix is not None:
            body["label_prefix"] = label_prefix
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if vendor is not None:
            body["vendor"] = vendor
        if mode is not None:
            body["mode"] = mode
        if budget is not None:
            body["budget"] = budget
        if dry_run:
            body["dry_run"] = True
        if all:
            body["all"] = True
        return self._call("POST", "/v1/keys/revoke", body)

    # -- minting keys --------------------------------------------------------------------------

    def create_minting_key(
        self,
        vendors: Union[str, Iterable[str]],
        allowed_endpoints: Iterable[str],
        max_daily_usd_cap: Union[float, int, str, None] = None,
        max_ttl: Union[str, int, None] = None,
        label: Optional[str] = None,
        mode: Optional[str] = None,
        budgets: Optional[Iterable[str]] = None,
        allowed_budgets: Optional[Iterable[str]] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> MintingKey:
        """Creates a minting key (the API answers 201). ``mk.secret`` is only in this answer: hand
        it to the backend that mints (``KEYLEASH_MINTING_KEY``), or use ``mk.minter()``.

        ``allowed_endpoints``: the widest patterns a minted key can have. ``max_daily_usd_cap``:
        the cap of a key that asks for more or none (None: no maximum). ``max_ttl``: the longest a
        minted key lives (default ``"1h"``). ``budgets``: budgets every minted key counts against;
        ``allowed_budgets``: further ones a key may name (ids, or prefixes ending in ``*``).
        """
        body: Dict[str, Any] = {
            "vendors": [vendors] if isinstance(vendors, str) else list(vendors),
            "allowed_endpoints": list(allowed_endpoints),
        }
        for name, value in (("max_daily_usd_cap", max_daily_usd_cap), ("max_ttl", max_ttl), ("label", label), ("mode", mode)):
            if value is not None:
                body[name] = value
        if budgets is not None:
            body["budgets"] = list(budgets)
        if allowed_budgets is not None:
            body["allowed_budgets"] = list(allowed_budgets)
        if metadata is not None:
            body["metadata"] = dict(metadata)
        return MintingKey(self._call("POST", "/v1/minting_keys", body))

    def get_minting_key(self, minting_key_id: str) -> MintingKey:
        """A minting key (never its secret), with its secret ``versions`` (``MintingKeyNotFoundError`` if none)."""
        return MintingKey(self._call("GET", _minting_key_path(minting_key_id)))

    def list_minting_keys(self, limit: Optional[int] = None, cursor: Optional[str] = None) -> Dict[str, Any]:
        """One page: ``{"object": "list", "data": [...], "has_more", "next_cursor"}``."""
        params = [(n, str(v)) for n, v in (("limit", limit), ("cursor", cursor)) if v is not None]
        page = self._call("GET", "/v1/minting_keys", params=params)
        page["data"] = [MintingKey(k) for k in page.get("data", [])]
        return page

    def iter_minting_keys(self, limit: Optional[int] = None) -> Iterator[MintingKey]:
        """Every minting key, page after page."""
        return _every_page(lambda c: self.list_minting_keys(limit=limit, cursor=c))

    def rotate_minting_key(self, minting_key_id: str, grace_period: Union[str, int, None] = None) -> MintingKey:
        """A new secret (``version`` + 1), in ``mk.secret``. Keys minted with older versions keep
        working for ``grace_period`` (``"1h"`` or seconds; default: the minting key's ``max_ttl``)."""
        body: Dict[str, Any] = {}
        if grace_period is not None:
            body["grace_period"] = grace_period
        return MintingKey(self._call("POST", _minting_key_path(minting_key_id) + "/rotate", body))

    def revoke_minting_key(self, minting_key_id: str, missing_ok: bool = False) -> Optional[MintingKey]:
        """Revokes a minting key (idempotent): every key minted from it is refused from then on,
        used or not (``keys_revoked`` counts the ones in use). An unknown id raises
        ``MintingKeyNotFoundError`` unless ``missing_ok``."""
        try:
            return MintingKey(self._call("DELETE", _minting_key_path(minting_key_id)))
        except MintingKeyNotFoundError:
            if missing_ok:
                return None
            raise

    # -- budgets -------------------------------------------------------------------------------

    def create_budget(
        self,
        id: str,
        limit_usd: Union[float, int, str],
        period: str,
        frozen: Optional[bool] = None,
        metadata: Optional[Mapping[str, str]] = None,
        rate_limit: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Creates a budget: ``limit_usd`` per ``period`` (``"day"``, ``"month"`` or ``"total"``).
        A taken id raises ``BudgetExistsError``."""
        body: Dict[str, Any] = {"id": id, "limit_usd": limit_usd, "period": period}
        if frozen is not None:
            body["frozen"] = frozen
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if rate_limit is not None:
            body["rate_limit"] = dict(rate_limit)
        return self._call("POST", "/v1/budgets", body)

    def get_budget(self, budget_id: str) -> Dict[str, Any]:
        """A budget with its spend and remaining limit in the current window (``BudgetNotFoundError`` if none)."""
        return self._call("GET", _budget_path(budget_id))

    def list_budgets(self, limit: Optional[int] = None, cursor: Optional[str] = None) -> Dict[str, Any]:
        """One page of budgets by id: ``{"object": "list", "data", "has_more", "next_cursor"}``."""
        params = [(n, str(v)) for n, v in (("limit", limit), ("cursor", cursor)) if v is not None]
        return self._call("GET", "/v1/budgets", params=params)

    def iter_budgets(self, limit: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Every budget, page after page."""
        return _every_page(lambda c: self.list_budgets(limit=limit, cursor=c))

    def update_budget(
        self,
        budget_id: str,
        limit_usd: Union[float, int, str, None] = None,
        frozen: Optional[bool] = None,
        metadata: Optional[Mapping[str, str]] = None,
        rate_limit: Any = _UNSET,
    ) -> Dict[str, Any]:
        """Changes a budget's limit, frozen state, metadata (replaced) or rate limit
        (``rate_limit=None`` removes it); effective for the next call."""
        body: Dict[str, Any] = {}
        if limit_usd is not None:
            body["limit_usd"] = limit_usd
        if frozen is not None:
            body["frozen"] = frozen
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if rate_limit is not _UNSET:
            body["rate_limit"] = None if rate_limit is None else dict(rate_limit)
        return self._call("PATCH", _budget_path(budget_id), body)

    def delete_budget(self, budget_id: str) -> Dict[str, Any]:
        """Deletes a budget: ``{"object": "budget", "id", "deleted": True}``. While an active key
        is attached it raises ``BudgetInUseError``."""
        return self._call("DELETE", _budget_path(budget_id))

    def budget_spend(self, budget_id: str, window: Optional[str] = None) -> Dict[str, Any]:
        """The budget's spend in one window: ``"YYYY-MM-DD"`` (day budgets), ``"YYYY-MM"`` (month)
        or ``"total"``; the current window when omitted."""
        params = [("window", window)] if window is not None else None
        return self._call("GET", _budget_path(budget_id) + "/spend", params=params)

    def freeze_budget(self, budget_id: str) -> Dict[str, Any]:
        """Freezes a budget: every call of every attached key is refused (403 ``budget_frozen``)
        and no key can be issued against it."""
        return self._call("POST", _budget_path(budget_id) + "/freeze")

    def unfreeze_budget(self, budget_id: str) -> Dict[str, Any]:
        """Unfreezes a budget."""
        return self._call("POST", _budget_path(budget_id) + "/unfreeze")

    def list_audit(self, key_id: Optional[str] = None, vendor: Optional[str] = None, decision: Optional[str] = None, code: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None) -> Dict[str, Any]:
        """One page of the audit log, newest first."""
        params = [(n, str(v)) for n, v in (("key_id", key_id), ("vendor", vendor), ("decision", decision), ("code", code), ("limit", limit), ("cursor", cursor)) if v is not None]
        return self._call("GET", "/v1/audit", params=params)

    # -- proxy ---------------------------------------------------------------------------------

    def session(self, key: Union[VaultKey, str], raise_keyleash_errors: bool = True) -> ProxySession:
        """A ``requests.Session`` bound to the proxy and one vault key (a key or its token)."""
        return ProxySession(self.proxy_url, _token_of(key), raise_keyleash_errors=raise_keyleash_errors)

    def proxy(self, key: Union[VaultKey, str], method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call through the proxy: ``client.proxy(key, "POST", "/stripe/v1/payment_intents", json={...})``."""
        with self.session(key) as s:
            return s.request(method, path, **kwargs)

    # -- internals -----------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, params: Any = None, timeout: Optional[float] = None, idempotency_key: Optional[str] = None) -> Dict[str, Any]:
        retryable = method in ("GET", "DELETE") or idempotency_key is not None
        t = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + t
        attempt = 0
        while True:
            try:
                return self._call_once(method, path, body, params, max(0.001, deadline - time.monotonic()), idempotency_key)
            except KeyleashError as e:
                again = isinstance(e, KeyleashConnectionError) or e.status in _RETRY_STATUSES
                if not (retryable and again) or attempt >= self.max_retries:
                    raise
                retry_after = getattr(e, "retry_after", None) or e.body.get("retry_after")
                wait = float(retry_after) if isinstance(retry_after, (int, float)) and retry_after > 0 else 0.1 * 2**attempt * (0.5 + random.random() / 2)
                wait = min(wait, 2.0)
                if time.monotonic() + wait >= deadline:
                    raise
                time.sleep(wait)
                attempt += 1

    def _call_once(self, method: str, path: str, body: Any, params: Any, t: float, idempotency_key: Optional[str]) -> Dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._admin_token}", "Accept": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        try:
            resp = self._session.request(method, self.api_url + path, headers=headers, data=data, params=params, timeout=t)
        except requests.Timeout as e:
            raise KeyleashConnectionError(0, {"code": "timeout", "message": f"keyleash control API did not answer {method} {path} in time"}) from e
        except requests.RequestException as e:
            raise KeyleashConnectionError(0, {"code": "connection_error", "message": f"keyleash control API unreachable ({method} {path.split('?')[0]})"}) from e
        if resp.ok:
            return resp.json()
        err = error_from_response(resp)
        if err is None:
            try:
                parsed = resp.json()
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get("code"), str):
                err = _BY_CODE.get(parsed["code"], KeyleashError)(resp.status_code, parsed)
            else:
                err = KeyleashError(resp.status_code, {"code": f"http_{resp.status_code}", "message": resp.text[:200]})
        raise err


# Used by keyleash.celery (and usable anywhere): the vault keys of the current task / context.
_current_keys: "contextvars.ContextVar[Optional[Dict[str, VaultKey]]]" = contextvars.ContextVar("keyleash_vault_keys", default=None)

# Last: mint.py builds on VaultKey above.
from .mint import Minter, MintError, MintedToken, decode_minted_token, narrow_key, usd_to_micros  # noqa: E402
