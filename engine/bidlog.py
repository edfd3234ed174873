"""The public bid log's canonical encoding, version 1 (RULES.md "The public bid log").

The one Python home of the encoding: the verifier (`python -m engine verify-log`),
recovery, the log the API serves, end processing's signature and the tests all
use it. The Rust core computes the same bid hashes where each bid is decided
(bidcore/rules/src/bidlog.rs), and tests hold the two equal. Standard library
only, so that the verifier needs nothing else of the engine's.

Every integer is unsigned, fixed-width and big-endian, ids are a UUID's 16
bytes, and every preimage opens with an 8-byte tag naming its kind and version,
so that no hash of one kind can stand for another's.

The chain, computed by the core as each bid is decided:

- genesis  = SHA-256(`D360gen\x01` ‖ auction id)
- bid hash = SHA-256(`D360bid\x01` ‖ auction id ‖ 40 zero bytes ‖ seq (5 bytes) ‖
  n (4) ‖ amount kobo (7) ‖ time ms (6) ‖ flags (1: 1 platform, 2 proxy) ‖
  previous (32)), 119 bytes

`n` is the bidder's number ("Bidder n": the order of their first bid in the
auction), 0 for a platform bid; `previous` is the hash of the auction's bid
before (by seq), or its genesis for the first. The widths hold every value the
engine accepts (amounts below 10^15 < 2^56, times up to 9999-12-31 < 2^48, seqs
below 2^40); with them the part after the auction's 64-byte header (its tag, id
and zeros) fits one SHA-256 block, so the core hashes a bid with one compression
from the header's state, which it computes once per auction.

Handles a bidder can prove, from a secret the engine keeps per auction:

- nonce      = SHA-256(`D360non\x01` ‖ auction secret (32) ‖ n (u32))
- commitment = SHA-256(`D360com\x01` ‖ auction id ‖ n (u32) ‖ user id ‖ nonce)
- handles    = SHA-256(`D360hnd\x01` ‖ auction id ‖ count (u32) ‖ commitment of
  Bidder 1 ‖ … ‖ of Bidder count)

The log shows each bid's commitment; a bidder given their nonce can show an
arbiter that the commitment of their handle is theirs, and no other bidder's
nonce follows from theirs (each is a hash of the secret, which stays with the
engine). The commitments are bound by the signed result, through `handles`.

The result signed with Ed25519 at the end (`result_message`):

- `D360res\x01` ‖ auction id ‖ final seq (u64) ‖ head (32) ‖ winner n (u32)
  ‖ final price kobo (i64) ‖ handles (32)

where the final seq and head are the last bid's seq and hash (0 and the genesis
without bids), and 0 stands for no winner and for no price. A key's id is the
first 8 bytes of SHA-256 over its 32-byte Ed25519 public key, in hex.

Hashes, commitments, nonces, signatures and keys travel as lowercase hex.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GENESIS_TAG = b"D360gen\x01"
NONCE_TAG = b"D360non\x01"
COMMITMENT_TAG = b"D360com\x01"
BID_TAG = b"D360bid\x01"
HANDLES_TAG = b"D360hnd\x01"
RESULT_TAG = b"D360res\x01"

FLAG_PLATFORM = 1
FLAG_PROXY = 2

#: The handle a platform (reserve-protection) bid shows; real bidders are "Bidder n".
PLATFORM_HANDLE = "Reserve protection"
_BIDDER = re.compile(r"Bidder ([1-9][0-9]{0,9})")
_HEADER_PAD = bytes(40)
_RESULT_FIELDS = struct.Struct(">8s16sQ32sIq32s")
_U32 = struct.Struct(">I")


def genesis(auction_id: uuid.UUID) -> bytes:
    """Where an auction's chain starts: what its first bid's hash chains on."""
    return hashlib.sha256(GENESIS_TAG + auction_id.bytes).digest()


def nonce(secret: bytes, number: int) -> bytes:
    """The nonce that opens bidder `number`'s commitment, derived from the auction's
    secret: handing it to that bidder reveals neither the secret nor another's."""
    return hashlib.sha256(NONCE_TAG + secret + _U32.pack(number)).digest()


def commitment_of(auction_id: uuid.UUID, number: int, user_id: uuid.UUID, nonce: bytes) -> bytes:
    """What the log shows for "Bidder `number`": it binds the handle to `user_id`,
    hidden until the bidder reveals the nonce."""
    return hashlib.sha256(
        COMMITMENT_TAG + auction_id.bytes + _U32.pack(number) + user_id.bytes + nonce
    ).digest()


def commitment(auction_id: uuid.UUID, number: int, user_id: uuid.UUID, secret: bytes) -> bytes:
    """Bidder `number`'s commitment, made from the auction's secret."""
    return commitment_of(auction_id, number, user_id, nonce(secret, number))


@dataclass(frozen=True, slots=True)
class Entry:
    """One bid as the log has it."""

    seq: int
    number: int  # "Bidder n"; 0 for a platform bid
    amount_kobo: int
    at_ms: int
    is_platform: bool
    is_proxy: bool


def bid_hash(auction_id: uuid.UUID, entry: Entry, previous: bytes) -> bytes:
    """One bid's hash, chained on `previous`. Raises OverflowError for a value
    outside its width (none the engine accepts is)."""
    flags = (FLAG_PLATFORM if entry.is_platform else 0) | (FLAG_PROXY if entry.is_proxy else 0)
    if len(previous) != 32:
        raise ValueError("a previous hash is 32 bytes")
    return hashlib.sha256(
        BID_TAG
        + auction_id.bytes
        + _HEADER_PAD
        + entry.seq.to_bytes(5, "big")
        + entry.number.to_bytes(4, "big")
        + entry.amount_kobo.to_bytes(7, "big")
        + entry.at_ms.to_bytes(6, "big")
        + bytes((flags,))
        + previous
    ).digest()


def chain(auction_id: uuid.UUID, entries: Iterable[Entry]) -> list[bytes]:
    """Each entry's hash, in order, from the auction's genesis."""
    hashes, head = [], genesis(auction_id)
    for entry in entries:
        head = bid_hash(auction_id, entry, head)
        hashes.append(head)
    return hashes


def handles_digest(auction_id: uuid.UUID, commitments: Sequence[bytes]) -> bytes:
    """The digest of the handles' commitments, Bidder 1's first, that the result binds."""
    return hashlib.sha256(
        HANDLES_TAG + auction_id.bytes + _U32.pack(len(commitments)) + b"".join(commitments)
    ).digest()


def breaks(auction_id: uuid.UUID, bids: Iterable[tuple[Entry, bytes | None]]) -> list[int]:
    """The seqs of the bids, in order, whose listed hash is not their record's chained
    on the hash listed before them (the genesis before the first): a bid changed
    after it was hashed, one removed before it, one moved. None counts as a break."""
    previous, broken = genesis(auction_id), []
    for entry, listed in bids:
        try:
            holds = listed is not None and bid_hash(auction_id, entry, previous) == listed
        except OverflowError:  # a value no accepted bid has
            holds = False
        if not holds:
            broken.append(entry.seq)
        previous = listed if listed is not None else bytes(32)
    return broken


def result_message(
    auction_id: uuid.UUID,
    final_seq: int,
    head: bytes,
    winner_number: int | None,
    final_price_kobo: int | None,
    handles: bytes,
) -> bytes:
    """The bytes an auction's result is signed over (`handles`: `handles_digest`)."""
    return _RESULT_FIELDS.pack(
        RESULT_TAG,
        auction_id.bytes,
        final_seq,
        head,
        winner_number or 0,
        final_price_kobo or 0,
        handles,
    )


def key_id(public_key: bytes) -> str:
    """A signing key's id: the first 8 bytes of SHA-256 over its raw public key, hex."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def handle(number: int) -> str:
    """The handle the log and the room show for bidder `number` (0: the platform)."""
    return PLATFORM_HANDLE if number == 0 else f"Bidder {number}"


def number_of(handle: str) -> int | None:
    """The bidder number in a handle: 0 for the platform's, None for none."""
    if handle == PLATFORM_HANDLE:
        return 0
    match = _BIDDER.fullmatch(handle)
    return int(match.group(1)) if match else None
