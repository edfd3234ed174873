"""`python -m engine verify-log URL_OR_FILE [--keys URL_OR_FILE]`: check a public
bid log (GET /api/auctions/{id}/log) without trusting the engine's database.

It recomputes every bid's hash from its record and the hash listed before it
(engine/bidlog.py), checks that each handle keeps one commitment and that the
handles are numbered in the order they first bid, and, once the auction ended,
that the result names the log's last bid and head and that its Ed25519 signature
holds under the published key it names (GET /api/log-keys; for a URL the keys
default to the same origin's, for a FILE `--keys` is needed). With `--opening`
(a bidder's GET /api/auctions/{id}/log/me) it also proves which bids are theirs.

Exit status: 0 when everything holds (a log without a result yet: its chain;
`--require-result` makes a missing result a failure), 1 naming the first bid
that breaks or the bad signature, 2 when the log or the keys cannot be read.
Standard library and `cryptography` only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine import bidlog

VERIFIED, BROKEN, UNREADABLE = 0, 1, 2
FETCH_TIMEOUT_S = 30
_LOG_PATH = re.compile(r"/api/auctions/([0-9a-fA-F-]{36})/log/?$")
_HEX = re.compile(r"[0-9a-f]*")
HASH_DIGITS, SIGNATURE_DIGITS = 64, 128


class Unreadable(Exception):
    """The log, the keys or the opening could not be fetched or read."""


class Broken(Exception):
    """The log or its result does not verify; the message says where first."""


@dataclass
class Verdict:
    auction_id: uuid.UUID
    bids: int
    head: bytes
    lines: list[str] = field(default_factory=list)


# ---- reading ----------------------------------------------------------------------------


def is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def read_json(source: str) -> Any:
    """A JSON document from an http(s) URL or a file."""
    try:
        if is_url(source):
            # http(s) only: is_url said so.
            request = urllib.request.Request(source, headers={"Accept": "application/json"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310
                data = response.read()
        else:
            with open(source, "rb") as file:
                data = file.read()
        return json.loads(data)
    except urllib.error.HTTPError as err:
        raise Unreadable(f"{source}: HTTP {err.code} {err.reason}") from None
    except (OSError, urllib.error.URLError) as err:
        raise Unreadable(f"{source}: {err}") from None
    except ValueError as err:
        raise Unreadable(f"{source} is not JSON: {err}") from None


def keys_for(source: str) -> str:
    """Where the keys are published for a log fetched from `source`."""
    parts = urllib.parse.urlsplit(source)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/api/log-keys", "", ""))


def auction_in(source: str) -> uuid.UUID | None:
    """The auction a log URL names, if it does."""
    match = _LOG_PATH.search(urllib.parse.urlsplit(source).path) if is_url(source) else None
    return uuid.UUID(match.group(1)) if match else None


# ---- checking ---------------------------------------------------------------------------


def _field(item: dict[str, Any], name: str, kind: type, where: str, *, null: bool = False) -> Any:
    value = item.get(name)
    if value is None and null and name in item:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Broken(f"{where}: `{name}` is missing or not {kind.__name__}")
    return value


def _hex(item: dict[str, Any], name: str, digits: int, where: str) -> bytes:
    value = _field(item, name, str, where)
    if len(value) != digits or not _HEX.fullmatch(value):
        raise Broken(f"{where}: `{name}` is not {digits} lowercase hex digits")
    return bytes.fromhex(value)


@dataclass
class _Handles:
    """The commitments the log shows, by bidder number."""

    commitments: dict[int, bytes] = field(default_factory=dict)

    def see(self, number: int, commitment: bytes, where: str) -> None:
        known = self.commitments.get(number)
        if known is None:
            if number != len(self.commitments) + 1:
                raise Broken(
                    f"{where}: Bidder {number} bids before Bidder {len(self.commitments) + 1} "
                    "ever did (handles are numbered in the order bidders first bid)"
                )
            self.commitments[number] = commitment
        elif known != commitment:
            raise Broken(f"{where}: Bidder {number}'s commitment differs from their earlier bids'")

    def digest(self, auction_id: uuid.UUID) -> bytes:
        return bidlog.handles_digest(
            auction_id, [self.commitments[n] for n in sorted(self.commitments)]
        )


def check_chain(
    auction_id: uuid.UUID, bids: Any
) -> tuple[list[tuple[bidlog.Entry, bytes]], _Handles]:
    """Every bid's record and hash, in the log's order; raises Broken at the first
    bid that does not verify."""
    if not isinstance(bids, list):
        raise Broken("the log has no `bids` list")
    previous, last_seq = bidlog.genesis(auction_id), 0
    handles, checked = _Handles(), []
    for position, item in enumerate(bids, 1):
        if not isinstance(item, dict):
            raise Broken(f"bid {position} of the log is not an object")
        seq = item.get("seq")
        where = f"bid seq {seq}" if isinstance(seq, int) else f"bid {position} of the log"
        seq = _field(item, "seq", int, where)
        bidder = _field(item, "bidder", str, where)
        number = bidlog.number_of(bidder)
        if number is None:
            raise Broken(f"{where}: {bidder!r} is not a handle")
        entry = bidlog.Entry(
            seq=seq,
            number=number,
            amount_kobo=_field(item, "amount_kobo", int, where),
            at_ms=_field(item, "at_ms", int, where),
            is_platform=_field(item, "is_platform_bid", bool, where),
            is_proxy=_field(item, "is_proxy", bool, where),
        )
        if entry.is_platform != (number == 0):
            raise Broken(f"{where}: {bidder!r} does not match is_platform_bid")
        if not (0 < seq < 2**40 and 0 <= entry.at_ms < 2**48 and number < 2**32):
            raise Broken(f"{where}: seq, at_ms or the bidder number is out of range")
        if not 0 < entry.amount_kobo < 2**56:
            raise Broken(f"{where}: amount_kobo out of range")
        listed = _hex(item, "hash", HASH_DIGITS, where)
        if number:
            handles.see(number, _hex(item, "commitment", HASH_DIGITS, where), where)
        elif item.get("commitment") is not None:
            raise Broken(f"{where}: a reserve-protection bid has no commitment")
        if seq <= last_seq:
            raise Broken(f"{where}: it comes after bid seq {last_seq} (bids are listed by seq)")
        if bidlog.bid_hash(auction_id, entry, previous) != listed:
            raise Broken(
                f"{where}: its hash does not match its record and the hash before it (the bid "
                "was changed, or a bid before it removed or moved)"
            )
        previous, last_seq = listed, seq
        checked.append((entry, listed))
    return checked, handles


def check_result(
    auction_id: uuid.UUID,
    result: Any,
    chain: list[tuple[bidlog.Entry, bytes]],
    handles: _Handles,
    keys: Any,
) -> str:
    """What the signed result says; raises Broken if it does not match the log or its
    signature does not hold."""
    if not isinstance(result, dict):
        raise Broken("the result is not an object")
    where = "the result"
    if _field(result, "auction_id", str, where) != str(auction_id):
        raise Broken(f"the result is for auction {result['auction_id']}, not {auction_id}")
    last = chain[-1] if chain else None
    final_seq = _field(result, "final_seq", int, where)
    head = _hex(result, "head", HASH_DIGITS, where)
    price = _field(result, "final_price_kobo", int, where, null=True)
    winner = _field(result, "winner", str, where, null=True)
    expected_head = last[1] if last else bidlog.genesis(auction_id)
    if final_seq != (last[0].seq if last else 0) or head != expected_head:
        raise Broken("the result's final_seq and head are not the log's last bid's")
    if price != (last[0].amount_kobo if last else None):
        raise Broken("the result's final_price_kobo is not the log's last bid's amount")
    winner_number = None
    if winner is not None:
        winner_number = bidlog.number_of(winner)
        if not winner_number or last is None or last[0].number != winner_number:
            raise Broken(f"the result names {winner!r} winner, who did not place the last bid")
    key_id = _field(result, "key_id", str, where)
    signature = _hex(result, "signature", SIGNATURE_DIGITS, where)
    public_key = _published(keys, key_id)
    message = bidlog.result_message(
        auction_id, final_seq, head, winner_number, price, handles.digest(auction_id)
    )
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        raise Broken(
            f"the result's signature does not hold under key {key_id} (the result, or a "
            "bidder's commitment in the log, is not what was signed)"
        ) from None
    outcome = f"won by {winner}" if winner else "no winner"
    return f"result: {outcome}, price {price} kobo, final seq {final_seq}, signed by key {key_id}"


def _published(keys: Any, key_id: str) -> bytes:
    found = keys.get("keys", {}).get(key_id) if isinstance(keys, dict) else None
    if not isinstance(found, dict) or not isinstance(found.get("public_key"), str):
        raise Broken(f"the result is signed by key {key_id}, which is not among the published keys")
    text = found["public_key"]
    if found.get("algorithm") != "Ed25519" or len(text) != HASH_DIGITS or not _HEX.fullmatch(text):
        raise Broken(f"published key {key_id} is not a raw Ed25519 public key in hex")
    public_key = bytes.fromhex(text)
    if bidlog.key_id(public_key) != key_id:
        raise Broken(f"published key {key_id} is not the key with that id")
    return public_key


def check_opening(auction_id: uuid.UUID, opening: Any, handles: _Handles) -> str:
    """Which handle the opening proves is its bidder's."""
    if not isinstance(opening, dict):
        raise Broken("the opening is not an object")
    where = "the opening"
    number = _field(opening, "number", int, where)
    nonce = _hex(opening, "nonce", HASH_DIGITS, where)
    try:
        user_id = uuid.UUID(_field(opening, "user_id", str, where))
    except ValueError:
        raise Broken("the opening's user_id is not a UUID") from None
    commitment = bidlog.commitment_of(auction_id, number, user_id, nonce)
    if handles.commitments.get(number) != commitment:
        raise Broken(f"the opening does not open Bidder {number}'s commitment in this log")
    return f"opening: Bidder {number} is user {user_id}"


def verify(
    log: Any,
    keys: Any,
    auction_id: uuid.UUID | None = None,
    *,
    opening: Any = None,
    require_result: bool = False,
) -> Verdict:
    """Check a log body; raises Broken at the first thing that does not hold."""
    if not isinstance(log, dict):
        raise Broken("the log is not a JSON object")
    result = log.get("result")
    if auction_id is None:
        named = result.get("auction_id") if isinstance(result, dict) else None
        try:
            auction_id = uuid.UUID(named) if isinstance(named, str) else None
        except ValueError:
            auction_id = None
        if auction_id is None:
            raise Broken("no auction id: the log has no result naming it; pass --auction")
    chain, handles = check_chain(auction_id, log.get("bids"))
    head = chain[-1][1] if chain else bidlog.genesis(auction_id)
    verdict = Verdict(auction_id, len(chain), head)
    verdict.lines.append(
        f"auction {auction_id}: {len(chain)} bids chain from its genesis to head {head.hex()}"
    )
    if result is None:
        if require_result:
            raise Broken("the log has no signed result (the auction has not been end-processed)")
        verdict.lines.append("result: none signed yet (the auction has not been end-processed)")
    else:
        verdict.lines.append(check_result(auction_id, result, chain, handles, keys))
    if opening is not None:
        verdict.lines.append(check_opening(auction_id, opening, handles))
    return verdict


# ---- the command ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="URL_OR_FILE", help="a GET /api/auctions/{id}/log body")
    parser.add_argument(
        "--keys",
        metavar="URL_OR_FILE",
        help="the published keys (GET /api/log-keys); default for a URL: the same origin's",
    )
    parser.add_argument(
        "--auction",
        type=uuid.UUID,
        metavar="ID",
        help="the auction (default: from the URL or the result)",
    )
    parser.add_argument(
        "--opening", metavar="URL_OR_FILE", help="a bidder's GET /api/auctions/{id}/log/me body"
    )
    parser.add_argument(
        "--require-result", action="store_true", help="a log without a signed result fails"
    )


def run(args: argparse.Namespace) -> int:
    try:
        log = read_json(args.log)
        keys_source = args.keys or (keys_for(args.log) if is_url(args.log) else None)
        if keys_source is None and isinstance(log, dict) and log.get("result") is not None:
            raise Unreadable("a log read from a file needs --keys (GET /api/log-keys)")
        keys = read_json(keys_source) if keys_source is not None else {}
        opening = read_json(args.opening) if args.opening else None
    except Unreadable as err:
        print(f"error: {err}", file=sys.stderr)
        return UNREADABLE
    try:
        verdict = verify(
            log,
            keys,
            args.auction or auction_in(args.log),
            opening=opening,
            require_result=args.require_result,
        )
    except Broken as err:
        print(f"BROKEN: {err}")
        return BROKEN
    for line in verdict.lines:
        print(line)
    print("VERIFIED")
    return VERIFIED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine verify-log", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
