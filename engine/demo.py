"""The local demo's world (`python -m engine demo`, the README's `make run`,
which server/demo.py runs): a dealer, three funded bidders, a vehicle and an
auction that goes live a few seconds after start-up, made through the
engine's own services; the room's address and sign-in links are printed."""

from __future__ import annotations

import logging
import random
import uuid

import asyncpg

from engine.auctions import AuctionFields, NewAuction, create_auction
from engine.config import Settings
from engine.sequencer import Sequencer
from engine.tokens import mint_token
from engine.users import UserUpsert, upsert_user
from engine.vehicles import VehicleCreate, create_vehicle
from engine.wallet import WalletChange, credit

logger = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1c58e5-5d1e-4f43-9b2e-1d7a0e6c0d36")
DEALER = ("Demo Motors Ikeja", "dealer")
BIDDERS = ("Ada Okafor", "Bola Adeyemi", "Chidi Eze")
FUNDS_KOBO = 2_000_000_000  # ₦20,000,000 each
START_IN_MS = 5_000
LASTS_MS = 15 * 60_000


def _user_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


async def seed(
    pool: asyncpg.Pool, sequencer: Sequencer, now: int, settings: Settings, base_url: str
) -> None:
    """Make the demo's world (idempotent: the same names give the same users) and
    print where to find it."""
    dealer = _user_id(DEALER[0])
    await upsert_user(
        pool,
        sequencer,
        dealer,
        UserUpsert("dealer@demo.dealer360.invalid", "dealer", "approved", DEALER[0]),
    )
    bidders = []
    for name in BIDDERS:
        user = _user_id(name)
        email = f"{name.split()[0].lower()}@demo.dealer360.invalid"
        await upsert_user(pool, sequencer, user, UserUpsert(email, "user", "approved", name))
        await credit(pool, sequencer, user, WalletChange(FUNDS_KOBO, f"demo-funds-{user}"))
        bidders.append((name, user))
    vehicle = await create_vehicle(
        pool,
        VehicleCreate(
            vin="".join(random.choices("ABCDEFGHJKLMNPRSTUVWXYZ0123456789", k=17)),
            year=2019,
            make="Toyota",
            model="Camry",
            listed_by=dealer,
            body_type="sedan",
            mileage_km=48_000,
            color="Midnight Black",
            price_kobo=1_550_000_000,
            location="Lagos",
        ),
        now,
    )
    fields = AuctionFields(
        vehicle_id=vehicle.id,
        start_time_ms=now + START_IN_MS,
        end_time_ms=now + START_IN_MS + LASTS_MS,
        start_price_kobo=1_200_000_000,
        reserve_price_kobo=1_500_000_000,
        auction_type="reserve",
    )
    auction = await create_auction(
        pool, sequencer, NewAuction(fields, created_by=dealer, status="scheduled"), now
    )
    lines = [
        "",
        "Dealer360 auction engine demo",
        f"  room:    {base_url}/rooms/{auction.id}   (live in {START_IN_MS // 1000} s, "
        f"for {LASTS_MS // 60_000} min)",
        "  bid as one of the demo bidders (each link signs one in):",
    ]
    for name, user in bidders:
        token = mint_token(user, "user", settings.jwt_secret, ttl_s=24 * 3600)
        # In the fragment, which the browser keeps to itself: no server log sees it.
        lines.append(f"    {name}: {base_url}/rooms/{auction.id}#token={token}")
    lines.append(f"  REST:    {base_url}/api/auctions/{auction.id}")
    print("\n".join(lines), flush=True)
