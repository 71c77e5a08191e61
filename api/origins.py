"""Which web pages and host names may talk to this server: CORS, cross-site writes, DNS rebinding.

A browser on the user's machine can reach a server bound to 127.0.0.1, and the default key `dev`
is public knowledge. So, while the static key is `dev`:
- cross-origin requests are allowed only from loopback origins (`http://localhost:*`,
  `http://127.x.x.x:*`, `http://[::1]:*`), whatever CORS_ALLOWED_ORIGINS says;
- a request whose `Host` (port ignored) is not a loopback name, the bound address, or a name in
  ALLOWED_HOSTS is refused: a DNS-rebinding page (evil.example resolving to 127.0.0.1) sends its
  own name as Host. A request without Host (HTTP/1.0) is allowed.
Always: a state-changing method (anything but GET/HEAD/OPTIONS) that carries a foreign `Origin`
or `Sec-Fetch-Site: cross-site` is refused unless that origin is allowed, so a form POST from
another site is refused even though it needs no CORS preflight.
With another key, CORS follows CORS_ALLOWED_ORIGINS (empty = any origin), as the original.
Never does: authentication. Every refusal here is a 403 naming the header.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from kissvdb.config import Settings
from kissvdb.errors import Forbidden

SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
DEV_KEY = "dev"


def is_loopback_name(host: str) -> bool:
    """`localhost`, `*.localhost` (RFC 6761) or a loopback IP (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a Host header, without the port (`[::1]:9917` -> `::1`)."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _origin_host(origin: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an Origin header, or None for `null` and anything unparsable."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.scheme, parts.netloc.lower()


class OriginPolicy:
    """The decisions above, built once from the settings."""

    def __init__(self, settings: Settings):
        self.dev_key = settings.api_key == DEV_KEY
        origins = [o.strip() for o in settings.cors_allowed_origins.split(",") if o.strip()]
        # None = any origin (CORS_ALLOWED_ORIGINS unset), else exact matches only.
        self.cors_origins: frozenset[str] | None = frozenset(origins) if origins else None
        hosts = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
        hosts.add(settings.bind_addr.strip("[]").lower())
        self.allowed_hosts = frozenset(hosts)

    @property
    def any_origin(self) -> bool:
        return self.cors_origins is None and not self.dev_key

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for `origin`, or None if it is not allowed."""
        if self.dev_key:
            if origin is None or not self._loopback_origin(origin):
                return None
            if self.cors_origins is not None and origin not in self.cors_origins:
                return None
            return origin
        if self.cors_origins is None:
            return "*"
        if origin is not None and origin in self.cors_origins:
            return origin
        return None

    @staticmethod
    def _loopback_origin(origin: str) -> bool:
        parsed = _origin_host(origin)
        return parsed is not None and is_loopback_name(host_name(parsed[1]))

    def check_host(self, headers) -> None:
        """Refuse a non-loopback Host while the key is `dev` (DNS rebinding)."""
        if not self.dev_key:
            return
        host = headers.get("Host")
        if host is None:
            return
        name = host_name(host)
        if is_loopback_name(name) or name in self.allowed_hosts:
            return
        raise Forbidden(
            f"host `{name}` is not allowed while the API key is `dev` (add it to ALLOWED_HOSTS, "
            "or set API_KEY)", field="Host")

    def check_write_origin(self, method: str, headers) -> None:
        """Refuse a state-changing request sent by another site, unless its origin is allowed."""
        if method in SAFE_METHODS:
            return
        origin = headers.get("Origin")
        if origin is not None:
            if self._same_origin(origin, headers.get("Host")) or self.allowed_origin(origin) is not None:
                return
            raise Forbidden(f"origin `{origin}` may not send {method} requests", field="Origin")
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() == "cross-site":
            raise Forbidden(f"cross-site {method} requests are refused", field="Sec-Fetch-Site")

    @staticmethod
    def _same_origin(origin: str, host: str | None) -> bool:
        parsed = _origin_host(origin)
        return parsed is not None and host is not None and parsed[1] == host.strip().lower()
