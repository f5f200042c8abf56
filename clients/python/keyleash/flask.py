"""Flask extension: a vault key per request, issued in ``before_request``, revoked in ``teardown_request``
(or minted locally from a minting key, with no control API call: ``minter=Minter()``).

    from keyleash import Keyleash
    from keyleash.flask import KeyleashFlask

    app = Flask(__name__)
    KeyleashFlask(app, client=Keyleash(), vendor="stripe",
                  allowed_endpoints=["/v1/payment_intents", "/v1/payment_intents/*"],
                  daily_usd_cap=100, cap_exhausted_status=402)

In a view or tool function: ``g.vault_key`` (the token), ``g.vault_key_id``, ``g.vault_keys``
(name → key) and, per entry, ``g.<name>_vault_key``. Set ``KEYLEASH_USE_VAULT_KEYS = False`` (or
``USE_VAULT_KEYS = False``) in the app config to issue nothing, e.g. in unit tests.

Minting instead of issuing (docs/minting.md): ``KeyleashFlask(app, minter=Minter(), vendor=...,
allowed_endpoints=[...])``. Each request's key is made locally, so a request never waits on the
control API and needs no admin token; calls still go through the proxy (``KEYLEASH_PROXY_URL``).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Union

from flask import Flask, current_app, g, jsonify, request

from . import CapExhaustedError, Keyleash, KeyleashConnectionError, KeyleashError, NoVaultKeyError, ProxySession, VaultKey, is_cap_exhausted
from .mint import Minter, MintError, _mint_entry, clip_label

__all__ = ["KeyleashFlask", "DEFAULT_SKIP_PATHS", "UNAVAILABLE_CODE", "current_vault_key", "proxy_session"]

log = logging.getLogger("keyleash")

#: Paths that never get a key (exact, or any sub-path).
DEFAULT_SKIP_PATHS = ("/health", "/healthz", "/readyz", "/livez", "/ping", "/metrics", "/favicon.ico", "/static")
UNAVAILABLE_CODE = "vault_key_unavailable"


class KeyleashFlask:
    """Issues the request's vault key(s) before each request and revokes them at teardown.

    One key: ``vendor`` + ``allowed_endpoints`` (+ ``daily_usd_cap``, ``mode``). Several keys:
    ``vendors={"stripe": {"allowed_endpoints": [...], "daily_usd_cap": 100}, "twilio": {...}}``
    (an entry's ``vendor`` defaults to its name). ``label``, ``metadata`` and ``budgets`` (budget
    ids every key is attached to, e.g. ``lambda req: [f"user:{req.headers['X-User']}"]``; an
    entry's own ``budgets`` replaces them) may be functions of the request. ``fail_open=False``
    answers 503 ``vault_key_unavailable`` when keys cannot be issued within ``issue_timeout``
    seconds; ``fail_open=True`` runs the view without a key and logs a warning. ``cap_exhausted_status=402`` turns an uncaught ``CapExhaustedError`` into that status.

    ``minter``: mint the keys locally instead (no network call at request start, no admin token
    needed). The spec is checked by a trial mint here, so a bad one fails at startup. Minted keys
    are not revoked at teardown (that would be a control API call per request; they expire at
    ``expires_in``) unless ``revoke_minted=True``, which revokes them through ``client``. The proxy
    URL comes from ``client``, else ``KEYLEASH_PROXY_URL`` in the app config or the environment.
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        client: Optional[Keyleash] = None,
        vendor: Optional[str] = None,
        allowed_endpoints: Optional[Iterable[str]] = None,
        daily_usd_cap: Optional[float] = None,
        vendors: Optional[Mapping[str, Mapping[str, Any]]] = None,
        expires_in: Union[str, int] = "5m",
        mode: Optional[str] = None,
        label: Union[str, Callable[[Any], str], None] = None,
        metadata: Union[Mapping[str, str], Callable[[Any], Mapping[str, str]], None] = None,
        budgets: Union[Iterable[str], Callable[[Any], Iterable[str]], None] = None,
        fail_open: bool = False,
        issue_timeout: float = 2.0,
        skip_paths: Iterable[str] = DEFAULT_SKIP_PATHS,
        skip: Optional[Callable[[Any], bool]] = None,
        cap_exhausted_status: Optional[int] = None,
        minter: Optional[Minter] = None,
        revoke_minted: bool = False,
    ):
        if vendors is None:
            if not vendor or not allowed_endpoints:
                raise ValueError("KeyleashFlask: give vendor and allowed_endpoints, or vendors")
            spec: Dict[str, Any] = {"vendor": vendor, "allowed_endpoints": list(allowed_endpoints)}
            if daily_usd_cap is not None:
                spec["daily_usd_cap"] = daily_usd_cap
            vendors = {vendor: spec}
        self.vendors = {name: dict(spec) for name, spec in vendors.items()}
        self.client = client
        self.expires_in = expires_in
        self.mode = mode
        self.label = label
        self.metadata = metadata
        self.budgets = budgets if budgets is None or callable(budgets) else list(budgets)
        self.fail_open = fail_open
        self.issue_timeout = issue_timeout
        self.skip_paths = tuple(skip_paths)
        self.skip = skip
        self.cap_exhausted_status = cap_exhausted_status
        self.minter = minter
        self.revoke_minted = revoke_minted
        if minter is not None:
            for name, spec in self.vendors.items():
                self._mint(name, spec, label=_static(label) or "startup check", metadata=_static(metadata), budgets=_static(self.budgets))
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.config.setdefault("KEYLEASH_USE_VAULT_KEYS", app.config.get("USE_VAULT_KEYS", True))
        app.extensions["keyleash"] = self
        app.before_request(self._before_request)
        app.teardown_request(self._teardown_request)
        if self.cap_exhausted_status is not None:
            status = self.cap_exhausted_status

            def on_cap_exhausted(err: Exception):
                if not is_cap_exhausted(err):
                    raise err  # another error of the same class: as if unhandled
                remaining = getattr(err, "remaining_usd", None)
                if remaining is None:
                    body = getattr(err, "json_body", None) or getattr(err, "details", None)
                    remaining = body.get("remaining_usd") if isinstance(body, dict) else None
                return jsonify(code="cap_exhausted", message="spend limit reached for this request", remaining_usd=remaining), status

            # keyleash's own error, and the official SDKs' errors built from keyleash's 429.
            for cls in _cap_error_classes():
                app.register_error_handler(cls, on_cap_exhausted)

    # -- hooks -----------------------------------------------------------------------------------

    def _client(self) -> Keyleash:
        if self.client is None:
            cfg = current_app.config
            self.client = Keyleash(cfg.get("KEYLEASH_API_URL"), cfg.get("KEYLEASH_PROXY_URL"), cfg.get("KEYLEASH_ADMIN_TOKEN"))
        return self.client

    def _proxy_url(self) -> str:
        if self.client is not None:
            return self.client.proxy_url
        url = current_app.config.get("KEYLEASH_PROXY_URL") or os.environ.get("KEYLEASH_PROXY_URL")
        if not url:
            raise RuntimeError("keyleash: KEYLEASH_PROXY_URL is not set (app config or environment), and no client was given")
        return url

    def _mint(self, name: str, spec: Mapping[str, Any], label: Any, metadata: Any, budgets: Any) -> VaultKey:
        return _mint_entry(self.minter, name, spec, expires_in=self.expires_in, mode=self.mode, label=label, metadata=metadata, budgets=budgets)  # type: ignore[arg-type]

    def _enabled(self) -> bool:
        cfg = current_app.config
        return bool(cfg.get("KEYLEASH_USE_VAULT_KEYS", True)) and bool(cfg.get("USE_VAULT_KEYS", True))

    def _skipped(self) -> bool:
        if self.skip is not None:
            return bool(self.skip(request))
        path = request.path
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.skip_paths)

    def _before_request(self):
        g.vault_keys = {}
        g.vault_key = None
        g.vault_key_id = None
        for name in self.vendors:
            setattr(g, f"{name}_vault_key", None)
            setattr(g, f"{name}_vault_key_id", None)
        if not self._enabled() or self._skipped():
            return None
        label = self.label(request) if callable(self.label) else (self.label or clip_label(f"flask {request.method} {request.path}"))
        metadata = self.metadata(request) if callable(self.metadata) else self.metadata
        budgets = self.budgets(request) if callable(self.budgets) else self.budgets
        if self.minter is not None:
            try:
                minted = {name: self._mint(name, spec, label, metadata, budgets) for name, spec in self.vendors.items()}
            except MintError as e:  # e.g. a label or metadata made from this request
                if self.fail_open:
                    log.warning("keyleash: could not mint a vault key (%s); fail_open is on, so %s %s runs without one", e, request.method, request.path)
                    return None
                return _unavailable("invalid_request")
            self._expose(minted)
            return None
        client = self._client()
        deadline = time.monotonic() + self.issue_timeout
        issued: Dict[str, VaultKey] = {}
        try:
            for name, spec in self.vendors.items():
                spec = dict(spec)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KeyleashConnectionError(0, {"code": "timeout", "message": f"issuing vault keys took longer than {self.issue_timeout} s"})
                issued[name] = client.issue_key(
                    vendor=spec.pop("vendor", name),
                    allowed_endpoints=spec.pop("allowed_endpoints"),
                    expires_in=spec.pop("expires_in", self.expires_in),
                    mode=spec.pop("mode", self.mode),
                    label=spec.pop("label", label),
                    metadata=spec.pop("metadata", metadata),
                    budgets=spec.pop("budgets", budgets),
                    timeout=remaining,
                    **spec,
                )
        except KeyleashError as e:
            _revoke_all(client, issued)
            if self.fail_open:
                log.warning("keyleash: could not issue a vault key (%s); fail_open is on, so %s %s runs without one", e, request.method, request.path)
                return None
            return _unavailable(e.code)
        self._expose(issued)
        return None

    @staticmethod
    def _expose(keys: Dict[str, VaultKey]) -> None:
        g.vault_keys = keys
        first = next(iter(keys.values()))
        g.vault_key = first["token"]
        g.vault_key_id = first["id"]
        for name, key in keys.items():
            setattr(g, f"{name}_vault_key", key["token"])
            setattr(g, f"{name}_vault_key_id", key["id"])

    def _teardown_request(self, exc: Optional[BaseException]) -> None:
        keys = g.pop("vault_keys", None) or {}
        if keys and (self.minter is None or self.revoke_minted):
            _revoke_all(self._client(), keys)

    # -- helpers for views and tools -------------------------------------------------------------

    def session(self, name: Optional[str] = None) -> ProxySession:
        """A ``requests.Session`` on the proxy with this request's key (by entry name or vendor)."""
        key = current_vault_key(name)
        if key is None:
            raise NoVaultKeyError("keyleash: no vault key in this request (skipped path, keys off, or issuing failed with fail_open)")
        return ProxySession(self._proxy_url(), key["token"])


def _unavailable(reason: str):
    """The 503 when a request's keys cannot be had: keyleash's code as ``reason`` (``connection_error``,
    ``timeout``, ``unauthorized`` …), never a host, port or library detail."""
    return jsonify(code=UNAVAILABLE_CODE, message="could not issue a vault key for this request; try again shortly", reason=reason), 503


def _cap_error_classes() -> list:
    classes: list = [CapExhaustedError]
    try:  # the official packages, when the app uses them
        import stripe  # type: ignore

        classes.append(stripe.error.StripeError)
    except Exception:
        pass
    try:
        from twilio.base.exceptions import TwilioRestException  # type: ignore

        classes.append(TwilioRestException)
    except Exception:
        pass
    import requests

    classes.append(requests.HTTPError)  # resp.raise_for_status() on a proxy answer
    return classes


def _static(value: Any) -> Any:
    return None if callable(value) else value


def _revoke_all(client: Keyleash, keys: Mapping[str, VaultKey]) -> None:
    for key in keys.values():
        try:
            client.revoke_key(key["id"], missing_ok=True)
        except Exception as e:  # the response is done; the key still expires at its TTL
            log.warning("keyleash: could not revoke vault key %s (it stays usable until it expires): %s", key.get("id"), e)


def current_vault_key(name: Optional[str] = None) -> Optional[VaultKey]:
    """This request's key: by entry name or vendor, or the first one. None when there is none."""
    keys = g.get("vault_keys") or {}
    if not keys:
        return None
    if name is None:
        return next(iter(keys.values()))
    if name in keys:
        return keys[name]
    for k in keys.values():
        if k.get("vendor") == name:
            return k
    return None


def proxy_session(name: Optional[str] = None) -> ProxySession:
    """``proxy_session().post("/stripe/v1/payment_intents", json={...})`` with this request's key."""
    return current_app.extensions["keyleash"].session(name)
