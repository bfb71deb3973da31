"""The admin page's login: the password (plain, or hashed with scrypt), signed session cookies,
CSRF tokens, and the lock-out after too many wrong passwords.

The cookie carries a random session id, signed (with a timestamp, so it expires) by
itsdangerous under a key derived from TOKBOT_ADMIN_PASSWORD. Every replica with the same setting
accepts it, and changing the password ends every session; the only state on the server is the
sessions ended by logging out (in the database, `Store.end_session`). A form's
CSRF token is the session id signed under another salt, so it only works with its own cookie;
the login form's token is bound the same way to a pre-login cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "tokbot_admin_session"
LOGIN_COOKIE = "tokbot_admin_login"
#: A session (and a CSRF token) is good for this long after login.
SESSION_SECONDS = 12 * 3600
#: The lock-out counts wrong passwords in a row per client address, so one guesser locks out
#: only itself, and from anywhere, with a much higher ceiling, so many addresses guessing in
#: parallel are still stopped (there is one password to guess).
LOCKOUT_NAME = "admin-password"
MAX_FAILED_LOGINS = 10
MAX_FAILED_LOGINS_ANYWHERE = 200

HASH_PREFIX = "scrypt"
#: scrypt's cost: 16 MiB and about 50 ms per check here (the lock-out bounds how many).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The hashed form TOKBOT_ADMIN_PASSWORD takes: scrypt:N:r:p:salt:hash (salt and hash in
    URL-safe base64). Colons, not the usual dollar signs, which docker compose and shells
    would expand."""
    salt = salt or secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return ":".join(
        (HASH_PREFIX, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest))
    )


def password_matches(configured: str, given: str) -> bool:
    """Whether `given` is the password `configured` (plain or hashed) names; in constant time.
    CPU-heavy for a hashed one: run it in a thread."""
    if configured.startswith(HASH_PREFIX + ":"):
        _, n, r, p, salt, digest = configured.split(":")
        given_digest = _scrypt(given, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(given_digest, _unb64(digest))
    # Digests first, so the comparison's time does not depend on the lengths either.
    return hmac.compare_digest(
        hashlib.sha256(configured.encode()).digest(), hashlib.sha256(given.encode()).digest()
    )


def lockout_name(address: str) -> str:
    """The lock-out counter's row for one client address."""
    return f"{LOCKOUT_NAME}@{address}"


def client_address(peer: str | None, forwarded_for: list[str], proxy_hops: int) -> str:
    """Who is logging in: the peer, or behind `proxy_hops` trusted proxies the address the
    nearest of them saw (each appends the address it was reached from to X-Forwarded-For, so
    anything further left was written by the client and proves nothing). An IPv6 address
    counts as its /64, which one client usually holds whole."""
    entries = [e.strip() for header in forwarded_for for e in header.split(",") if e.strip()]
    seen = entries[-proxy_hops] if 0 < proxy_hops <= len(entries) else peer
    return _network(seen or "unknown")


def _network(address: str) -> str:
    host = address
    if address.startswith("[") and "]" in address:  # [v6]:port
        host = address[1 : address.index("]")]
    elif address.count(":") == 1:  # v4:port
        host = address.partition(":")[0]
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return address[:64]  # a proxy's name for it ("unknown", an obfuscated id)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Signer:
    """Signs and checks the session cookie and CSRF tokens."""

    def __init__(self, configured_password: str) -> None:
        # The key is derived, never the setting itself (which may be a plain password).
        key = hmac.new(
            configured_password.encode(), b"tokbot admin page signing key", hashlib.sha256
        ).digest()
        self._sessions = URLSafeTimedSerializer(key, salt="tokbot-admin-session")
        self._logins = URLSafeTimedSerializer(key, salt="tokbot-admin-login")
        self._csrf = URLSafeTimedSerializer(key, salt="tokbot-admin-csrf")

    def new_session(self) -> str:
        """A session cookie's value for a new login."""
        return self._sessions.dumps(secrets.token_urlsafe(16))

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired cookie, else None."""
        return _loads(self._sessions, cookie, SESSION_SECONDS)

    def new_login(self) -> str:
        """The pre-login cookie's value, which the login form's token is bound to."""
        return self._logins.dumps(secrets.token_urlsafe(16))

    def login_id(self, cookie: str | None) -> str | None:
        return _loads(self._logins, cookie, SESSION_SECONDS)

    def csrf_token(self, bound_to: str) -> str:
        """A token for forms of the session (or pre-login) id `bound_to`."""
        return self._csrf.dumps(bound_to)

    def csrf_ok(self, token: str | None, bound_to: str | None) -> bool:
        if bound_to is None:
            return False
        found = _loads(self._csrf, token, SESSION_SECONDS)
        return found is not None and hmac.compare_digest(found, bound_to)


def _loads(serializer: URLSafeTimedSerializer, value: str | None, max_age: int) -> str | None:
    if not value:
        return None
    try:
        loaded = serializer.loads(value, max_age=max_age)
    except BadSignature:  # also SignatureExpired, its subclass
        return None
    return loaded if isinstance(loaded, str) else None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
