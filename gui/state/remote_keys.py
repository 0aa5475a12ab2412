"""API keys of the servers that remote Prompt-page columns talk to, and the recent servers. Qt-free.

A key is kept in the OS keyring (the ``keyring`` package: Keychain, Windows Credential Manager,
Secret Service) when a backend exists; otherwise it is kept only in memory for this session and
the column says so. settings.json never holds a key: it holds the recent servers as base URL,
model and a flag that a key exists (:func:`remember`).
"""

from __future__ import annotations

from typing import Any

SERVICE = "tunebench"  # the keyring's service name; the base URL is the user name
SETTINGS_KEY = "remote_servers"
MAX_RECENT = 8
SESSION_ONLY_NOTE = "No system keyring: the key is kept only until Tunebench closes."

_session: dict[str, str] = {}  # base URL -> key, for this session (and a cache of the keyring)


def _keyring() -> Any:
    """The keyring module when a usable backend exists, else None."""
    try:
        import keyring  # light, but optional: without it keys are session-only
        from keyring.errors import KeyringError
    except ImportError:
        return None
    try:
        # The "fail" and "null" backends have priority 0 or below: nothing would be kept.
        return keyring if keyring.get_keyring().priority > 0 else None
    except (KeyringError, RuntimeError, AttributeError):
        return None


def persistent() -> bool:
    """Whether keys outlive the session (a keyring backend exists)."""
    return _keyring() is not None


def store(base_url: str, key: str) -> bool:
    """Keeps ``key`` for ``base_url`` (an empty key forgets it); True when the keyring holds it."""
    _session[base_url] = key
    keyring = _keyring()
    if keyring is None:
        return False
    try:
        if key:
            keyring.set_password(SERVICE, base_url, key)
            return True
        if keyring.get_password(SERVICE, base_url) is not None:
            keyring.delete_password(SERVICE, base_url)
    except Exception:  # a keyring backend may raise anything; the session copy stays
        return False
    return False


def get(base_url: str) -> str:
    """The key for ``base_url``: this session's, else the keyring's, else ""."""
    if base_url in _session:
        return _session[base_url]
    keyring = _keyring()
    key = ""
    if keyring is not None:
        try:
            key = keyring.get_password(SERVICE, base_url) or ""
        except Exception:  # a locked or broken keyring reads as no key
            key = ""
    _session[base_url] = key
    return key


def forget_session() -> None:
    """Drops the in-memory copies (tests; the keyring is untouched)."""
    _session.clear()


def recent(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The recent servers from settings, most recent first, well-formed entries only."""
    entries = settings.get(SETTINGS_KEY)
    if not isinstance(entries, list):
        return []
    return [{"base_url": e["base_url"], "model": str(e.get("model") or ""), "has_key": bool(e.get("has_key"))}
            for e in entries if isinstance(e, dict) and isinstance(e.get("base_url"), str) and e["base_url"]]


def remember(settings: dict[str, Any], base_url: str, model: str) -> dict[str, Any]:
    """Settings with ``base_url`` first among the recent servers: URL, model, has_key, never the key."""
    entry = {"base_url": base_url, "model": model, "has_key": bool(get(base_url))}
    others = [e for e in recent(settings) if e["base_url"] != base_url]
    return {**settings, SETTINGS_KEY: [entry, *others][:MAX_RECENT]}
