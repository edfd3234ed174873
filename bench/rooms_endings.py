"""``bench rooms --ending seller-decision``: auctions ending into their seller's
decision while the others keep taking bids.

A share of the steady scenario's auctions (``--ending-share``) carry a reserve no
bid reaches (RESERVE_KOBO) and no anti-sniping, and end one after another during
the bidding (spread evenly over END_SPAN of it), so end processing sends each to
`seller_decision` (the if-bid, RULES.md) under load. Their if-bid and counter
windows are short (``--if-bid-window-ms``), so jobs/ifbid.py's sweep expires
those nobody answers during the run; the dealer answers a share of them
(``--answer-share``) through ``POST /api/auctions/{id}/offer`` as they open, in
turn one of PLAYS, and for a counter the high bidder answers it (or lets it
expire). Meanwhile every bid and its fan-out are measured as without endings.

This module holds the plan (which auctions end when, which are answered how),
the start of the bidding matched to it, the seller's side during the run, and
the check and the figures after it: how many went to the seller's decision,
how many were answered or expired during the load, and whether every one's
status agrees with its if-bid, its bids and the answers the bench was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.core import BenchFailure
from bench.loadgen import Results
from bench.report import progress
from bench.rooms_stats import percentiles
from bench.rooms_world import FUNDS_KOBO, Api, EndingTerms, World, bounded, now_ms
from engine.tokens import mint_token
from jobs.ifbid import INTERVAL_S

#: jobs/ifbid.py expires the if-bids past their deadline this often.
SWEEP_INTERVAL_S = INTERVAL_S

MODES = ("none", "seller-decision")
#: Above any price a run reaches, as the bidders' funds are (rooms_world.FUNDS_KOBO).
RESERVE_KOBO = FUNDS_KOBO
#: The ends are spread evenly over this part of the bidding time: late enough that
#: every ending auction has bids, early enough that most if-bids close within the run.
END_SPAN = (0.1, 0.5)
#: How the answered if-bids are answered, dealt in order of their ends. The counter
#: left to expire comes first: it takes longest (its window, then the sweep).
PLAYS = ("counter-expired", "counter-accepted", "accept", "counter-declined", "decline")
#: A party answers this share of the window after its turn begins (uniform).
THINK = (0.1, 0.3)
#: How often the seller looks for an if-bid once its auction's end has passed.
POLL_S = 0.1
#: The room's statuses once an if-bid is decided (accepted: sold).
SOLD = ("pending_settlement", "settled")
_HTTP_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class EndingPlan:
    """Which auctions end, when, and how their if-bids are answered."""

    after_go_ms: dict[int, int]  # auction index → its end, ms after the bidding starts
    plays: dict[int, str]  # auction index → its play (absent: nobody answers)
    if_bid_window_ms: int  # the counter window too

    def terms(self, go_after_start_ms: int) -> EndingTerms:
        return EndingTerms(
            after_go_ms=self.after_go_ms,
            go_after_start_ms=go_after_start_ms,
            reserve_kobo=RESERVE_KOBO,
            if_bid_window_ms=self.if_bid_window_ms,
        )


def plan(
    auctions: int, share: float, answer_share: float, seconds: float, window_ms: int, seed: int
) -> EndingPlan:
    """`share` of the auctions (at least one when above 0) ending over END_SPAN of
    `seconds`; `answer_share` of those answered, spread among them in end order."""
    count = min(auctions, max(1, round(auctions * share))) if share > 0 else 0
    chosen = random.Random(seed * 7919 + 1).sample(range(auctions), count)
    first, last = (seconds * 1000 * edge for edge in END_SPAN)
    step = (last - first) / (count - 1) if count > 1 else 0.0
    after = {index: int(first + k * step) for k, index in enumerate(chosen)}
    plays: dict[int, str] = {}
    for k, index in enumerate(chosen):
        if int((k + 1) * answer_share) > int(k * answer_share):
            plays[index] = PLAYS[len(plays) % len(PLAYS)]
    return EndingPlan(after, plays, window_ms)


def go_after_start_ms(sockets: int) -> int:
    """When the bidding is planned to start after the auctions open: what connecting
    `sockets` usually takes with room to spare (a slower start moves the ends)."""
    return int((2 + sockets / 1000) * 1000)


async def start_bidding(
    api: Api, world: World, secret: str, settle_s: float, lead_s: float
) -> None:
    """Wait until `lead_s` before the planned start of the bidding. If connecting
    took longer than planned, the bidding starts `settle_s` + `lead_s` from now and
    every ending auction's end moves later by as much (a manager's extension), so
    each still ends its planned time after the start."""
    assert world.planned_go_ms is not None and world.manager_id is not None
    late = max(0, now_ms() + int((settle_s + lead_s) * 1000) - world.planned_go_ms)
    if late:
        progress(f"connecting took {late / 1000:.1f}s longer than planned: moving the ends as much")
        staff = api.as_user(mint_token(world.manager_id, "manager", secret, ttl_s=3600))

        def extend(index: int, end: int) -> Callable[[], Awaitable[None]]:
            async def job() -> None:
                path = f"/internal/admin/auctions/{world.auction_ids[index]}/extend"
                reason = "bench: the bidding started late; the end keeps its place in it"
                status, body = await staff.request(
                    "POST", path, {"reason": reason, "end_time_ms": end + late}
                )
                if status != 200:
                    raise BenchFailure(f"moving auction {index}'s end answered {status}: {body}")

            return job

        await bounded([extend(i, end) for i, end in world.ends_ms.items()], _HTTP_CONCURRENCY)
        world.ends_ms = {index: end + late for index, end in world.ends_ms.items()}
    world.planned_go_ms += late
    await asyncio.sleep(max(0.0, (world.planned_go_ms - now_ms()) / 1000 - lead_s))


def monotonic_ns_at(epoch_ms: int) -> int:
    """The monotonic clock's reading at `epoch_ms` (the generators keep that clock)."""
    return time.monotonic_ns() + epoch_ms * 1_000_000 - time.time_ns()


# ---- the seller's side, during the run ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One `POST /api/auctions/{id}/offer` the bench made, and what it was told."""

    auction: int
    play: str
    by: str  # seller | bidder
    action: str  # accept | decline | counter
    amount_kobo: int | None  # a counter's
    sent_ms: int
    answered_ms: int
    status: int  # HTTP; 0: no answer (the connection failed)
    code: str | None  # the error's code, when refused
    state: str | None  # the if-bid's state after it, when done (200)


@dataclass(slots=True)
class Seller:
    """The dealer answering the planned if-bids as they open (and the high bidder a
    counter), each party after its think time, through the public API."""

    api: Api
    world: World
    plan: EndingPlan
    secret: str
    seed: int
    answers: list[Answer] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)  # planned plays that found no open if-bid
    unfinished: list[int] = field(default_factory=list)  # cut short at the end of the run
    failed: list[str] = field(default_factory=list)  # plays the bench could not carry out
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._all())

    async def stop(self) -> None:
        """Cancel what is still under way (the run is over) and note it."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _all(self) -> None:
        plays = sorted(self.plan.plays.items(), key=lambda item: self.world.ends_ms[item[0]])
        async with asyncio.TaskGroup() as group:  # one failing stops the others
            for index, play in plays:
                group.create_task(self._one(index, play))

    async def _one(self, index: int, play: str) -> None:
        try:
            await self._play(index, play)
        except asyncio.CancelledError:
            self.unfinished.append(index)
            raise
        except Exception as err:  # the check reports it: the run then fails, saying why
            self.failed.append(f"auction {index} ({play}): {err!r}")

    async def _play(self, index: int, play: str) -> None:
        assert self.world.dealer_id is not None
        rng = random.Random(self.seed * 104_729 + index)
        window_s = self.plan.if_bid_window_ms / 1000
        seller = self.api.as_user(mint_token(self.world.dealer_id, "dealer", self.secret, 3600))
        opened = await self._opened(index, seller)
        if opened is None:
            self.missed.append(index)
            return
        await asyncio.sleep(rng.uniform(*THINK) * window_s)
        if play in ("accept", "decline"):
            await self._answer(seller, index, play, "seller", play, None)
            return
        high = int(opened["high_bid_kobo"])
        counter = high + max(1, high // 10)
        done = await self._answer(seller, index, play, "seller", "counter", counter)
        if done is None or play == "counter-expired":
            return
        bidder = await self._high_bidder(index)
        await asyncio.sleep(rng.uniform(*THINK) * window_s)
        action = "accept" if play == "counter-accepted" else "decline"
        await self._answer(bidder, index, play, "bidder", action, None)

    async def _opened(self, index: int, seller: Api) -> dict[str, Any] | None:
        """The if-bid once end processing has opened it; None if it never does (the
        auction ended without a bid) or it is no longer the seller's turn."""
        auction = self.world.auction_ids[index]
        await asyncio.sleep(max(0.0, (self.world.ends_ms[index] - now_ms()) / 1000))
        give_up = now_ms() + self.plan.if_bid_window_ms + int(SWEEP_INTERVAL_S * 3000)
        while now_ms() < give_up:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                status, body = await seller.request("GET", f"/api/auctions/{auction}/offer")
                if status == 200:
                    open_: bool = body["state"] == "open" and body["turn"] == "seller"
                    return body if open_ else None
                status, room = await self.api.request("GET", f"/api/auctions/{auction}")
                if status == 200 and room["auction"]["status"] not in ("live", "ended"):
                    return None  # end-processed without an if-bid: no real bid
            await asyncio.sleep(POLL_S)
        return None

    async def _high_bidder(self, index: int) -> Api:
        """The public API as the if-bid's bidder: the auction's top real bidder."""
        auction = self.world.auction_ids[index]
        history = await self.api.call("GET", f"/internal/auctions/{auction}/bids")
        top = next(bid for bid in reversed(history["bids"]) if not bid["is_platform_bid"])
        number = self.world.bidder_ids.index(uuid.UUID(top["user_id"]))
        return self.api.as_user(self.world.tokens[number])

    async def _answer(
        self, party: Api, index: int, play: str, by: str, action: str, amount: int | None
    ) -> Answer | None:
        """One answer, recorded; the answer if it was taken (200), else None."""
        body: dict[str, Any] = {"action": action}
        if amount is not None:
            body["amount_kobo"] = amount
        sent = now_ms()
        status: int = 0
        code: str | None = "connection_failed"
        state: str | None = None
        with contextlib.suppress(aiohttp.ClientError, OSError):
            path = f"/api/auctions/{self.world.auction_ids[index]}/offer"
            status, reply = await party.request("POST", path, body)
            code = None if status == 200 else str(reply.get("error", {}).get("code"))
            state = reply.get("state") if status == 200 else None
        answer = Answer(index, play, by, action, amount, sent, now_ms(), status, code, state)
        self.answers.append(answer)
        return answer if status == 200 else None


# ---- after the run ---------------------------------------------------------------------


def room_events(results: Sequence[Results]) -> dict[tuple[int, str], int]:
    """(auction index, event label) → the first arrival at any watcher (monotonic ns)."""
    first: dict[tuple[int, str], int] = {}
    for result in results:
        for key, at in result.room_events.items():
            if key not in first or at < first[key]:
                first[key] = at
    return first


@dataclass(frozen=True, slots=True)
class Clock:
    """The generators' monotonic clock against the epoch: the bidding's start on both."""

    go_ms: float
    start_ns: int
    stop_ns: int

    @classmethod
    def of(cls, start_ns: int, stop_ns: int) -> Clock:
        """From the bidding's start and stop on the monotonic clock, read now."""
        epoch_ns, monotonic_ns = time.time_ns(), time.monotonic_ns()
        return cls((epoch_ns + start_ns - monotonic_ns) / 1e6, start_ns, stop_ns)

    def epoch_ms(self, monotonic_ns: int) -> float:
        return self.go_ms + (monotonic_ns - self.start_ns) / 1e6

    def during_load(self, monotonic_ns: int | None) -> bool:
        return monotonic_ns is not None and monotonic_ns < self.stop_ns

    @property
    def stop_ms(self) -> float:
        return self.epoch_ms(self.stop_ns)


@dataclass(slots=True)
class Ended:
    """One ending auction after the run: what the rooms heard when, what the ledger says."""

    status: str  # the auction's, at the check
    after_start_s: float  # its end, after the bidding's start
    ended_ns: int | None  # its `ended` event at the first watcher (monotonic)
    to_seller_ns: int | None  # ... when that event said seller_decision
    decided_ns: int | None  # its if-bid's outcome (a `state` event) at the first watcher
    end_to_room_ms: float | None
    if_bid: str | None  # the if-bid's state; None: it has none
    problems: list[str]


async def check(
    api: Api,
    world: World,
    plan: EndingPlan,
    seller: Seller,
    results: Sequence[Results],
    clock: Clock,
    rejections: Mapping[str, int],
) -> dict[str, Any]:
    """Every auction's state after the run against its plan, its bids, its if-bid and
    the answers the bench was given; and the figures of the endings."""
    assert world.dealer_id is not None
    dealer = api.as_user(mint_token(world.dealer_id, "dealer", seller.secret, ttl_s=3600))
    ids = world.auction_ids
    states = await bounded(
        [_state_job(api, dealer, ids[i], i in plan.after_go_ms) for i in range(len(ids))],
        _HTTP_CONCURRENCY,
    )
    events = room_events(results)
    answered: dict[int, list[Answer]] = {}
    for answer in seller.answers:
        answered.setdefault(answer.auction, []).append(answer)
    problems = [f"the seller's side failed: {failure}" for failure in seller.failed]
    ended: list[Ended] = []
    for index, state in enumerate(states):
        if index in plan.after_go_ms:
            ended.append(_ended(index, state, events, clock, answered.get(index, [])))
            problems += ended[-1].problems
        elif state["room"]["status"] != "live":
            problems.append(f"auction {index} was to stay live and is {state['room']['status']}")
    return _figures(plan, seller, ended, clock, rejections, problems, len(ids)) | {
        "platform_deliveries": sum(result.platform_deliveries for result in results),
    }


def _ended(
    index: int,
    state: Mapping[str, Any],
    events: Mapping[tuple[int, str], int],
    clock: Clock,
    answers: list[Answer],
) -> Ended:
    room, history, offer = state["room"], state["bids"], state["offer"]
    status, end_ms = room["status"], room["end_time_ms"]
    to_seller = events.get((index, "ended:seller_decision"))
    ended_ns = to_seller if to_seller is not None else events.get((index, "ended:unsold"))
    decided = [events.get((index, f"state:{s}")) for s in (*SOLD, "unsold")]
    found = Ended(
        status=status,
        after_start_s=(end_ms - clock.go_ms) / 1000,
        ended_ns=ended_ns,
        to_seller_ns=to_seller,
        decided_ns=min((at for at in decided if at is not None), default=None),
        end_to_room_ms=clock.epoch_ms(ended_ns) - end_ms if ended_ns is not None else None,
        if_bid=offer["state"] if offer is not None else None,
        problems=[],
    )
    where = f"auction {index}"
    late = [bid for bid in history if bid["at_ms"] >= end_ms]
    if late:
        found.problems.append(f"{where}: {len(late)} bids at or after its end")
    top = next((bid for bid in reversed(history) if not bid["is_platform_bid"]), None)
    if top is None and (status != "unsold" or offer is not None):
        found.problems.append(f"{where} ended without a real bid and is {status}")
    elif top is not None and offer is None:
        found.problems.append(f"{where} ended below its reserve with no if-bid ({status})")
    elif top is not None:
        found.problems += agrees(index, status, offer, top["amount_kobo"], answers)
    return found


def _figures(
    plan: EndingPlan,
    seller: Seller,
    ended: list[Ended],
    clock: Clock,
    rejections: Mapping[str, int],
    problems: list[str],
    auctions: int,
) -> dict[str, Any]:
    taken = [a for a in seller.answers if a.status == 200]
    decided = Counter(
        e.if_bid for e in ended if e.if_bid != "open" and clock.during_load(e.decided_ns)
    )
    ends = [e.after_start_s for e in ended]
    return {
        "mode": "seller-decision",
        "auctions": len(ended),
        "of_auctions": auctions,
        "if_bid_window_ms": plan.if_bid_window_ms,
        "ends_after_start_s": [round(min(ends, default=0), 2), round(max(ends, default=0), 2)],
        "ended_during_load": sum(clock.during_load(e.ended_ns) for e in ended),
        "to_seller_decision": sum(e.if_bid is not None for e in ended),
        "to_seller_decision_during_load": sum(clock.during_load(e.to_seller_ns) for e in ended),
        "ended_without_bids": sum(e.if_bid is None for e in ended),
        "end_to_room_ms": percentiles(
            [e.end_to_room_ms for e in ended if e.end_to_room_ms is not None]
        ),
        "answers": {
            "planned": len(plan.plays),
            "sent": len(seller.answers),
            "taken": len(taken),
            "taken_during_load": sum(1 for a in taken if a.answered_ms < clock.stop_ms),
            "refused": dict(Counter(str(a.code) for a in seller.answers if a.status != 200)),
            "by_play": dict(Counter(plan.plays.values())),
            "found_no_open_if_bid": len(seller.missed),
            "unfinished": len(seller.unfinished),
            "failed": len(seller.failed),
        },
        "decided_during_load": {s: decided[s] for s in ("accepted", "declined", "expired")},
        "if_bids_at_the_check": dict(Counter(e.if_bid for e in ended if e.if_bid is not None)),
        "statuses_at_the_check": dict(Counter(e.status for e in ended)),
        "refused_after_end": rejections.get("auction_ended", 0),
        "consistent": not problems,
        "problems": problems[:10],
    }


def agrees(
    index: int, status: str, offer: Mapping[str, Any], top_kobo: int, answers: list[Answer]
) -> list[str]:
    """The auction's status, its if-bid and the answers the bench was given, together."""
    problems = []
    where = f"auction {index}"
    state = offer["state"]
    if offer["high_bid_kobo"] != top_kobo:
        problems.append(f"{where}: if-bid on {offer['high_bid_kobo']}, top real bid {top_kobo}")
    expected = {"open": ("seller_decision",), "accepted": SOLD}.get(state, ("unsold",))
    if status not in expected:
        problems.append(f"{where}: if-bid {state} but the auction is {status}")
    taken = [a for a in answers if a.status == 200]
    last = taken[-1] if taken else None
    if last is None:
        if state not in ("open", "expired"):
            problems.append(f"{where}: nobody answered, yet the if-bid is {state}")
        return problems
    if last.state != (state if last.action != "counter" else "open"):
        problems.append(f"{where}: the {last.by}'s {last.action} was answered {last.state}")
    if last.action == "counter":
        if (
            state not in ("open", "expired")
            or offer["offers"][-1]["amount_kobo"] != last.amount_kobo
        ):
            problems.append(f"{where}: countered {last.amount_kobo}, the if-bid is {state}")
    elif last.action == "decline" and state != "declined":
        problems.append(f"{where}: declined, the if-bid is {state}")
    elif last.action == "accept":
        price = top_kobo if last.by == "seller" else taken[-2].amount_kobo
        if state != "accepted" or offer["price_kobo"] != price:
            problems.append(
                f"{where}: accepted at {price}, the if-bid is {state} at {offer['price_kobo']}"
            )
    return problems


def _state_job(
    api: Api, dealer: Api, auction: str, ending: bool
) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def job() -> dict[str, Any]:
        room = (await api.call("GET", f"/api/auctions/{auction}"))["auction"]
        if not ending:
            return {"room": room, "bids": [], "offer": None}
        history = (await api.call("GET", f"/internal/auctions/{auction}/bids"))["bids"]
        status, offer = await dealer.request("GET", f"/api/auctions/{auction}/offer")
        if status not in (200, 404):
            raise BenchFailure(f"GET /api/auctions/{auction}/offer answered {status}: {offer}")
        return {"room": room, "bids": history, "offer": offer if status == 200 else None}

    return job


def summary(endings: Mapping[str, Any]) -> str:
    """One line: how many went to the seller's decision, were answered, expired."""
    answers = endings["answers"]
    decided = endings["decided_during_load"]
    return (
        f"endings: {endings['auctions']} of {endings['of_auctions']} auctions ended, "
        f"{endings['to_seller_decision']} to seller_decision "
        f"({endings['to_seller_decision_during_load']} during the load); "
        f"{answers['taken']} answers taken ({answers['taken_during_load']} during the load); "
        f"decided during the load: {decided['accepted']} accepted, {decided['declined']} "
        f"declined, {decided['expired']} expired; {endings['refused_after_end']} bids refused "
        f"auction_ended; consistent: {endings['consistent']}"
    )
