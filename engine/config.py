"""The engine's settings, read once from the environment.

Every setting has a default that runs the engine on one machine with nothing
installed (embedded PostgreSQL, no Redis); production sets the secrets.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

import platformdirs

from engine.errors import ConfigError
from engine.partitions import MAX_PARTITIONS

logger = logging.getLogger(__name__)

# Labelled so nobody mistakes them for real secrets in a log or a config dump.
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-do-not-use-in-production"  # noqa: S105
DEV_INTERNAL_API_TOKEN = "dev-only-insecure-internal-token-do-not-use-in-production"  # noqa: S105

LedgerMode = Literal["writebehind", "baseline"]
LEDGER_MODES: tuple[LedgerMode, ...] = ("writebehind", "baseline")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Below this a lease's renewals (every TTL / 3) would race the database's round trips.
MIN_LEASE_TTL_MS = 300
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None  # None: embedded PostgreSQL in engine_data_dir/pg
    engine_data_dir: Path = Path(platformdirs.user_data_dir("dealer360-engine"))
    redis_url: str | None = None  # None: single node, in-process fan-out and limits
    jwt_secret: str = DEV_JWT_SECRET
    internal_api_token: str = DEV_INTERNAL_API_TOKEN
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    ledger_batch_max: int = 1000  # = engine.ledger.DEFAULT_BATCH_MAX (tests/test_database.py)
    ledger_batch_window_ms: int = 2
    ledger_mode: LedgerMode = "writebehind"
    rate_limit_ip_per_min: int = 100
    rate_limit_user_per_min: int = 1000
    ws_bids_per_s: int = 10
    ws_frames_per_s: int = 20  # every frame type, per room socket
    ws_sockets_per_ip: int = 50  # open room sockets per client address, on this node
    max_body_bytes: int = 65536
    # The proxies whose X-Forwarded-For is believed (web/proxies.py); none: the TCP peer.
    trusted_proxies: tuple[Network, ...] = ()
    gc_full_interval_s: int = 600  # 0: CPython's own full collections (engine/gcpolicy.py)
    allow_dev_secrets: bool = False  # serve with the built-in secrets beyond loopback
    # Several nodes (API.md "Several nodes"): None derives it when serving.
    node_id: str | None = None  # default: host name + port
    advertise_url: str | None = None  # default: http://HOST:PORT
    partitions: int | None = None  # None: the database's, or 64 on its first start
    lease_ttl_ms: int = 3000
    # RULES.md "Outages": an interruption longer than this moves an end it caught.
    outage_min_ms: int = 5000
    # The Ed25519 seed the bid log's results are signed with (engine/signing.py);
    # None: one made once and kept in engine_data_dir.
    log_signing_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `environ` (default: the process environment).

        An empty variable counts as unset, as `FOO=` in a compose file means.
        Raises ConfigError naming the variable when a value is unusable.
        """
        env = _Environment(os.environ if environ is None else environ)
        defaults = cls()
        return cls(
            database_url=env.text("DATABASE_URL"),
            engine_data_dir=env.path("ENGINE_DATA_DIR", defaults.engine_data_dir),
            redis_url=env.text("REDIS_URL"),
            jwt_secret=env.secret("JWT_SECRET", DEV_JWT_SECRET),
            internal_api_token=env.secret("INTERNAL_API_TOKEN", DEV_INTERNAL_API_TOKEN),
            cors_origins=env.comma_list("CORS_ORIGINS"),
            log_level=env.choice("LOG_LEVEL", LOG_LEVELS, defaults.log_level, upper=True),
            ledger_batch_max=env.integer("LEDGER_BATCH_MAX", defaults.ledger_batch_max, 1),
            ledger_batch_window_ms=env.integer(
                "LEDGER_BATCH_WINDOW_MS", defaults.ledger_batch_window_ms, 0
            ),
            ledger_mode=cast(
                LedgerMode, env.choice("LEDGER_MODE", LEDGER_MODES, defaults.ledger_mode)
            ),
            rate_limit_ip_per_min=env.integer(
                "RATE_LIMIT_IP_PER_MIN", defaults.rate_limit_ip_per_min, 1
            ),
            rate_limit_user_per_min=env.integer(
                "RATE_LIMIT_USER_PER_MIN", defaults.rate_limit_user_per_min, 1
            ),
            ws_bids_per_s=env.integer("WS_BIDS_PER_S", defaults.ws_bids_per_s, 1),
            ws_frames_per_s=env.integer("WS_FRAMES_PER_S", defaults.ws_frames_per_s, 1),
            ws_sockets_per_ip=env.integer("WS_SOCKETS_PER_IP", defaults.ws_sockets_per_ip, 1),
            max_body_bytes=env.integer("MAX_BODY_BYTES", defaults.max_body_bytes, 1),
            trusted_proxies=env.networks("TRUSTED_PROXIES"),
            gc_full_interval_s=env.integer("GC_FULL_INTERVAL_S", defaults.gc_full_interval_s, 0),
            allow_dev_secrets=env.flag("ALLOW_DEV_SECRETS", defaults.allow_dev_secrets),
            node_id=env.node_id("NODE_ID"),
            advertise_url=env.url("ADVERTISE_URL"),
            partitions=env.optional_integer("PARTITIONS", 1, MAX_PARTITIONS),
            lease_ttl_ms=env.integer("LEASE_TTL_MS", defaults.lease_ttl_ms, MIN_LEASE_TTL_MS),
            outage_min_ms=env.integer("OUTAGE_MIN_MS", defaults.outage_min_ms, 0),
            log_signing_key=env.seed("LOG_SIGNING_KEY"),
        )

    @property
    def uses_dev_secrets(self) -> bool:
        """True while either secret is the built-in development value."""
        return (
            self.jwt_secret == DEV_JWT_SECRET or self.internal_api_token == DEV_INTERNAL_API_TOKEN
        )

    def check_secrets_for(self, host: str) -> None:
        """Refuse to serve on `host` with a development secret, unless that host is
        loopback only or ALLOW_DEV_SECRETS says this is a throwaway setup: the
        built-in values are public, and anyone who can reach the server could
        mint an admin token with one or credit wallets with the other."""
        if not self.uses_dev_secrets or self.allow_dev_secrets or is_loopback(host):
            return
        unset = [
            name
            for name, value, dev in (
                ("JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET),
                ("INTERNAL_API_TOKEN", self.internal_api_token, DEV_INTERNAL_API_TOKEN),
            )
            if value == dev
        ]
        raise ConfigError(
            f"refusing to serve on {host or 'every address'!r} with the built-in development "
            f"value of {' and '.join(unset)}, which anyone can read in the source: set "
            "JWT_SECRET and INTERNAL_API_TOKEN to long random strings (e.g. `openssl rand "
            "-hex 32`), bind to 127.0.0.1, or set ALLOW_DEV_SECRETS=1 for a throwaway setup"
        )


def is_loopback(host: str) -> bool:
    """Whether `host` (a --host value) listens on this machine's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, or "" (every address): cannot be shown to be loopback


class _Environment:
    """Typed reads of environment variables, each error naming its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def path(self, name: str, default: Path) -> Path:
        value = self.text(name)
        return Path(value).expanduser() if value else default

    def secret(self, name: str, dev_default: str) -> str:
        value = self.text(name)
        if value is None:
            logger.warning(
                "%s is not set: using the built-in development value, which anyone can "
                "read in the source; set %s before exposing the engine to a network",
                name,
                name,
            )
            return dev_default
        return value

    def seed(self, name: str) -> bytes | None:
        """A 32-byte key seed written as 64 hex digits (e.g. `openssl rand -hex 32`)."""
        value = self.text(name)
        if value is None:
            return None
        try:
            seed = bytes.fromhex(value)
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise ConfigError(
                f"{name} is not a 32-byte seed written as 64 hex digits (its value is not "
                "repeated here); make one with `openssl rand -hex 32`"
            )
        return seed

    def flag(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r} is not one of: 1, true, yes, on, 0, false, no, off")

    def comma_list(self, name: str) -> tuple[str, ...]:
        value = self.text(name) or ""
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def networks(self, name: str) -> tuple[Network, ...]:
        return tuple(_network(name, item) for item in self.comma_list(name))

    def choice(self, name: str, allowed: tuple[str, ...], default: str, upper: bool = False) -> str:
        value = self.text(name)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            raise ConfigError(f"{name}={value!r} is not one of: {', '.join(allowed)}")
        return value

    def node_id(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not _NODE_ID.fullmatch(value):
            raise ConfigError(
                f"{name}={value!r} is not a node id: 1 to 200 of letters, digits and . _ : @ -, "
                "starting with a letter or digit"
            )
        return value

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name}={value!r} is not an http(s) URL with a host")
        return value.rstrip("/")

    def optional_integer(self, name: str, minimum: int, maximum: int) -> int | None:
        if self.text(name) is None:
            return None
        number = self.integer(name, minimum, minimum)
        if number > maximum:
            raise ConfigError(f"{name}={number} is too large: it must be at most {maximum}")
        return number

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a whole number") from None
        if number < minimum:
            raise ConfigError(f"{name}={number} is too small: it must be at least {minimum}")
        return number


def _network(name: str, item: str) -> Network:
    """An address (a network of one) or a network in CIDR form. Host bits set
    (`10.0.0.7/8`) are refused rather than widened: trusting more addresses than
    the operator wrote would let them forge a client's address."""
    try:
        return ipaddress.ip_network(item, strict=True)
    except ValueError as err:
        raise ConfigError(
            f"{name}: {item!r} is not an IP address or a network ({err}); write addresses "
            "and CIDR networks separated by commas, e.g. 172.28.0.10,10.0.0.0/8,fd00::/8"
        ) from None
