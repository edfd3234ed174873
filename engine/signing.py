"""The bid log's signing keys: this node's Ed25519 key and the published ones.

A node signs the results it end-processes with its own key: the seed in
LOG_SIGNING_KEY (32 bytes as 64 hex digits), or else one made once and kept in
ENGINE_DATA_DIR/log_signing_key (the seed in hex, file mode 0600; a file others
may read is refused). Before it signs anything the node publishes its public key
in `log_keys` (sql/0031) under its key id, and keys stay there: every node serves
the same list at GET /api/log-keys, whichever node signed a result, and results
signed before a key was rotated out stay verifiable. Rotating is starting a node
with another seed (or without the kept file); nodes need not share a key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine import bidlog
from engine.clock import to_ms
from engine.config import Settings
from engine.errors import ConfigError

KEY_FILE = "log_signing_key"
ALGORITHM = "Ed25519"

_PUBLISH = """
INSERT INTO log_keys (key_id, public_key, node_id) VALUES ($1, $2, $3)
ON CONFLICT (key_id) DO NOTHING
"""
_PUBLISHED = "SELECT public_key FROM log_keys WHERE key_id = $1"
_KEYS = "SELECT key_id, public_key, created_at FROM log_keys ORDER BY created_at, key_id"


@dataclass(frozen=True, slots=True)
class LogSigner:
    """An Ed25519 key the bid log's results are signed with."""

    key: Ed25519PrivateKey = field(compare=False, repr=False)
    public_key: bytes  # raw, 32 bytes
    key_id: str

    @classmethod
    def from_seed(cls, seed: bytes) -> LogSigner:
        key = Ed25519PrivateKey.from_private_bytes(seed)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(key, public, bidlog.key_id(public))

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


def load_signer(settings: Settings) -> LogSigner:
    """LOG_SIGNING_KEY's key, or the one kept in ENGINE_DATA_DIR (made on first use)."""
    seed = settings.log_signing_key
    return LogSigner.from_seed(seed if seed is not None else kept_seed(settings.engine_data_dir))


def kept_seed(directory: Path) -> bytes:
    """The seed kept in `directory`, made once: written whole to a file of its own,
    then linked into place, so a process starting at the same moment reads either
    no file (and makes its own, which loses the link) or a whole one."""
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        draft = directory / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_bytes(32).hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the node's key
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(draft)
    return _read_seed(path)


def _read_seed(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} holds the bid log's signing key but others may read it (mode "
            f"{mode:o}): `chmod 600 {path}`, or set LOG_SIGNING_KEY"
        )
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ConfigError(
            f"{path} does not hold a 32-byte seed in hex: restore it from a backup, or "
            "move it away to start with a new key (results it signed stay verifiable "
            "by its published public key)"
        )
    return seed


async def publish(pool: asyncpg.Pool, signer: LogSigner, node_id: str | None) -> None:
    """Publish this node's public key (once; a key already published stays as it is)."""
    async with pool.acquire() as conn:
        await conn.execute(_PUBLISH, signer.key_id, signer.public_key, node_id)
        published = await conn.fetchval(_PUBLISHED, signer.key_id)
    if published != signer.public_key:
        raise ConfigError(
            f"key id {signer.key_id} is already published for another public key: start "
            "this node with another LOG_SIGNING_KEY"
        )


class LogKey(msgspec.Struct, frozen=True):
    algorithm: str
    public_key: str  # raw, hex
    published_ms: int


class LogKeys(msgspec.Struct, frozen=True):
    """GET /api/log-keys: every key a node signed results with, by key id."""

    keys: dict[str, LogKey]


async def published_keys(pool: asyncpg.Pool) -> LogKeys:
    rows = await pool.fetch(_KEYS)
    return LogKeys(
        {
            row["key_id"]: LogKey(ALGORITHM, row["public_key"].hex(), to_ms(row["created_at"]))
            for row in rows
        }
    )
