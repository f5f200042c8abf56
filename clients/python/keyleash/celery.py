"""Vault keys for Celery tasks (or any job): issued at the start, revoked in ``finally``.

Nothing here imports Celery: it works in any worker, thread or script.

Pass a ``Minter`` where a client goes to mint the keys locally instead (docs/minting.md): no
control API call at the task's start, no admin token on the worker. Minted keys are not revoked
at the end (they expire at ``expires_in``) unless ``revoke_with=client`` is given.

    from keyleash.celery import with_vault_key, current_vault_key

    @app.task
    @with_vault_key(client, vendor="stripe", allowed_endpoints=["/v1/payment_intents"], daily_usd_cap=50)
    def charge(order_id):
        client.proxy(current_vault_key(), "POST", "/stripe/v1/payment_intents", json={...})
"""
from __future__ import annotations

import contextlib
import functools
import logging
import time
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, TypeVar, Union

from . import Keyleash, KeyleashConnectionError, KeyleashError, NoVaultKeyError, VaultKey, _current_keys
from .mint import Minter, _mint_entry, clip_label

__all__ = ["vault_key", "vault_keys", "with_vault_key", "current_vault_key", "require_vault_key"]

log = logging.getLogger("keyleash")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TASK_TTL = "30m"


def _revoke_all(client: Keyleash, keys: Mapping[str, VaultKey]) -> None:
    for key in keys.values():
        try:
            client.revoke_key(key["id"], missing_ok=True)
        except Exception as e:  # never mask the task's own outcome; the key still expires
            log.warning("keyleash: could not revoke vault key %s (it stays usable until it expires): %s", key.get("id"), e)


KeySource = Union[Keyleash, Minter]


@contextlib.contextmanager
def vault_keys(client: KeySource, vendors: Mapping[str, Mapping[str, Any]], expires_in: Union[str, int] = DEFAULT_TASK_TTL, label: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None, budgets: Optional[Iterable[str]] = None, revoke_with: Optional[Keyleash] = None, fail_open: bool = False, issue_timeout: Optional[float] = None) -> Iterator[Dict[str, VaultKey]]:
    """Issues one key per entry of ``vendors`` (``{"stripe": {"allowed_endpoints": [...], ...}}``;
    an entry's ``vendor`` defaults to its name), yields ``{name: key}``, revokes them all on exit.
    ``budgets``: budget ids every key is attached to (an entry's own ``budgets`` replaces them).

    As in the Flask extension: ``issue_timeout`` (seconds; default the client's timeout) bounds
    issuing all the keys, retries included. When issuing fails, ``fail_open=False`` (default)
    raises the ``KeyleashError`` (``KeyleashConnectionError`` when keyleash is down) and the
    block does not run; ``fail_open=True`` logs a warning and yields ``{}``, so
    ``current_vault_key()`` is None and ``require_vault_key()`` raises ``NoVaultKeyError``.

    ``client`` a ``Minter``: the keys are minted locally, and revoked on exit only through
    ``revoke_with`` (a ``Keyleash`` client), if given."""
    if isinstance(client, Minter):
        minted = {name: _mint_entry(client, name, spec, expires_in=expires_in, label=label, metadata=metadata, budgets=budgets) for name, spec in vendors.items()}
        token = _current_keys.set(dict(minted))
        try:
            yield minted
        finally:
            _current_keys.reset(token)
            if revoke_with is not None:
                _revoke_all(revoke_with, minted)
        return
    issued: Dict[str, VaultKey] = {}
    deadline = None if issue_timeout is None else time.monotonic() + issue_timeout
    try:
        for name, spec in vendors.items():
            spec = dict(spec)
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KeyleashConnectionError(0, {"code": "timeout", "message": f"issuing vault keys took longer than {issue_timeout} s"})
            issued[name] = client.issue_key(
                vendor=spec.pop("vendor", name),
                allowed_endpoints=spec.pop("allowed_endpoints"),
                expires_in=spec.pop("expires_in", expires_in),
                label=spec.pop("label", label),
                metadata=spec.pop("metadata", metadata),
                budgets=spec.pop("budgets", budgets),
                timeout=remaining,
                **spec,
            )
    except KeyleashError as e:
        _revoke_all(client, issued)
        if not fail_open:
            raise
        log.warning("keyleash: could not issue a vault key (%s); fail_open is on, so the task runs without one", e.code)
        issued = {}
    except BaseException:
        _revoke_all(client, issued)
        raise
    token = _current_keys.set(dict(issued))
    try:
        yield issued
    finally:
        _current_keys.reset(token)
        _revoke_all(client, issued)


@contextlib.contextmanager
def vault_key(client: KeySource, vendor: str, allowed_endpoints: list, daily_usd_cap: Optional[float] = None, expires_in: Union[str, int] = DEFAULT_TASK_TTL, label: Optional[str] = None, mode: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None, budgets: Optional[Iterable[str]] = None, revoke_with: Optional[Keyleash] = None, fail_open: bool = False, issue_timeout: Optional[float] = None) -> Iterator[Optional[VaultKey]]:
    """``with vault_key(client, "stripe", [...], daily_usd_cap=50) as key:`` — a 30-minute key by
    default, revoked when the block exits (also on an exception). ``vault_key(minter, ...)``
    mints it instead (see ``vault_keys``)."""
    spec: Dict[str, Any] = {"vendor": vendor, "allowed_endpoints": allowed_endpoints}
    if daily_usd_cap is not None:
        spec["daily_usd_cap"] = daily_usd_cap
    if mode is not None:
        spec["mode"] = mode
    with vault_keys(client, {vendor: spec}, expires_in=expires_in, label=label, metadata=metadata, budgets=budgets, revoke_with=revoke_with, fail_open=fail_open, issue_timeout=issue_timeout) as keys:
        yield keys.get(vendor)


def with_vault_key(client: KeySource, vendor: Optional[str] = None, allowed_endpoints: Optional[list] = None, daily_usd_cap: Optional[float] = None, expires_in: Union[str, int] = DEFAULT_TASK_TTL, label: Optional[Union[str, Callable[..., str]]] = None, metadata: Optional[Mapping[str, str]] = None, vendors: Optional[Mapping[str, Mapping[str, Any]]] = None, inject: Optional[str] = None, budgets: Optional[Union[Iterable[str], Callable[..., Iterable[str]]]] = None, revoke_with: Optional[Keyleash] = None, fail_open: bool = False, issue_timeout: Optional[float] = None) -> Callable[[F], F]:
    """Decorator: each call of the function runs with its own key(s), issued at the start and
    revoked in ``finally``. Read them with ``current_vault_key()``, or pass ``inject="vault_key"``
    to receive the key (or, with ``vendors``, the ``{name: key}`` dict) as that keyword argument.
    ``label`` and ``budgets`` (budget ids the keys are attached to, e.g.
    ``budgets=lambda user_id, **_: [f"user:{user_id}"]``) may be functions of the call's
    arguments. Put it under ``@app.task``. ``with_vault_key(minter, ...)`` mints the keys
    instead (checked once here, so a bad spec fails at import); ``revoke_with=client`` also
    revokes them at the end. ``fail_open`` and ``issue_timeout``: as in ``vault_keys`` (and the
    Flask extension)."""
    if vendors is None:
        if not vendor or not allowed_endpoints:
            raise ValueError("with_vault_key: give vendor and allowed_endpoints, or vendors")
        spec: Dict[str, Any] = {"vendor": vendor, "allowed_endpoints": allowed_endpoints}
        if daily_usd_cap is not None:
            spec["daily_usd_cap"] = daily_usd_cap
        vendors = {vendor: spec}
    single = vendor if len(vendors) == 1 and vendor else None
    if isinstance(client, Minter):
        for name, spec in vendors.items():
            _mint_entry(client, name, spec, expires_in=expires_in, label=(None if callable(label) else label) or "startup check", metadata=metadata, budgets=None if callable(budgets) else budgets)

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            lbl = label(*args, **kwargs) if callable(label) else (label or clip_label(f"task {fn.__module__}.{fn.__qualname__}"))
            bud = budgets(*args, **kwargs) if callable(budgets) else budgets
            with vault_keys(client, vendors, expires_in=expires_in, label=lbl, metadata=metadata, budgets=bud, revoke_with=revoke_with, fail_open=fail_open, issue_timeout=issue_timeout) as keys:
                if inject:
                    kwargs[inject] = keys.get(single) if single else keys
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def current_vault_key(name: Optional[str] = None) -> Optional[VaultKey]:
    """The key of the running ``vault_key`` block / ``with_vault_key`` call: by entry name or
    vendor, or the first one. None outside."""
    keys = _current_keys.get()
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


def require_vault_key(name: Optional[str] = None) -> VaultKey:
    """Like ``current_vault_key`` but raises ``NoVaultKeyError`` when there is none (outside a
    block, or issuing failed with ``fail_open``)."""
    key = current_vault_key(name)
    if key is None:
        raise NoVaultKeyError(f"keyleash: no vault key{f' for {name!r}' if name else ''} in this task (outside with_vault_key, or issuing failed with fail_open)")
    return key
