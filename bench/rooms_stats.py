"""The `rooms` scenario's figures: latencies, rates and counts from what the
load generators recorded, a per-second series for the plot, and the Markdown
report.

Times are ``time.monotonic_ns`` readings taken in the generator processes (one
clock for the whole machine), so a bid's send time in one process and its
arrival at a watcher in another subtract directly.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import ACCEPTED, AMOUNT_BITS, MAX, UNANSWERED, Results

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}
#: Answers that do not say whether the bid was placed: the ledger may hold it.
UNKNOWN_OUTCOMES = frozenset({"unanswered", "unavailable", "error:internal", "error:unavailable"})


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles (and the max) of `values`, in their unit; None if empty."""
    if not values:
        return {**dict.fromkeys(QUANTILES), "max": None}
    ordered = sorted(values)
    n = len(ordered)
    result: dict[str, float | None] = {
        name: round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))], 3)
        for name, q in QUANTILES.items()
    }
    result["max"] = round(ordered[-1], 3)
    return result


@dataclass(slots=True)
class Second:
    """One second of the run, by the bids' send times."""

    sent: int = 0
    accepted: int = 0
    ack_ms: list[float] = field(default_factory=list)
    fanout_ms: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Figures:
    sent: int
    accepted: int
    answered: int
    rejections: dict[str, int]
    unanswered: int
    ack_ms: list[float]
    ack_accepted_ms: list[float]
    fanout_ms: list[float]  # every (accepted bid, watcher) delivery
    fanout_last_ms: list[float]  # per accepted bid: its last watcher
    deliveries_expected: int
    deliveries_unmatched: int
    extensions: int
    seconds: list[Second]
    accepted_ids: dict[str, tuple[int, int]]
    rejected_ids: set[str]
    unknown_ids: set[str]
    max_amount: int
    #: Maximums (`max` frames): sent, accepted, refused by code, their answers' latency.
    maxes_sent: int = 0
    maxes_accepted: int = 0
    max_rejections: dict[str, int] = field(default_factory=dict)
    ack_max_ms: list[float] = field(default_factory=list)
    #: Bid events the watchers received that a maximum placed (no client sent them).
    proxy_deliveries: int = 0


def figures(
    results: Sequence[Results], start_ns: int, stop_ns: int, *, phase: bool = False
) -> Figures:
    """Join the bidders' and the watchers' records of every process. A `phase` of a
    longer run counts only the bids sent in [start_ns, stop_ns), their deliveries,
    and the unmatched deliveries received then; and it expects every delivery to
    the watchers connected when the bidding began (sockets may be cut later on)."""
    span = max(1, math.ceil((stop_ns - start_ns) / 1e9))
    seconds = [Second() for _ in range(span)]
    sent_at: dict[int, int] = {}  # delivery key → send time of the accepted bid
    elsewhere: set[int] = set()  # delivery keys of accepted bids left out
    ack_ms: list[float] = []
    ack_accepted_ms: list[float] = []
    rejections: Counter[str] = Counter()
    accepted_ids: dict[str, tuple[int, int]] = {}
    rejected_ids: set[str] = set()
    unknown_ids: set[str] = set()
    sent = accepted = answered = unanswered = extensions = max_amount = 0
    maxes_sent = maxes_accepted = 0
    max_rejections: Counter[str] = Counter()
    ack_max_ms: list[float] = []
    for result in results:
        bids = result.bids
        names = result.outcomes
        for i, send in enumerate(bids.send_ns):
            if phase and not start_ns <= send < stop_ns:
                if bids.kind[i] != MAX and bids.outcome[i] == ACCEPTED:
                    elsewhere.add((bids.auction[i] << AMOUNT_BITS) | bids.amount[i])
                continue
            if bids.kind[i] == MAX:  # answered like a bid, places no bid of its own
                maxes_sent += 1
                if bids.outcome[i] == ACCEPTED:
                    maxes_accepted += 1
                elif bids.outcome[i] != UNANSWERED:
                    max_rejections[names[bids.outcome[i]]] += 1
                if bids.outcome[i] != UNANSWERED:
                    latency = (bids.ack_ns[i] - send) / 1e6
                    ack_ms.append(latency)
                    ack_max_ms.append(latency)
                continue
            outcome = bids.outcome[i]
            auction, amount = bids.auction[i], bids.amount[i]
            second = seconds[min(span - 1, max(0, (send - start_ns) // 1_000_000_000))]
            second.sent += 1
            sent += 1
            max_amount = max(max_amount, amount)
            if outcome == UNANSWERED:
                unanswered += 1
                unknown_ids.add(bids.client_bid_id[i])
                continue
            answered += 1
            latency = (bids.ack_ns[i] - send) / 1e6
            ack_ms.append(latency)
            second.ack_ms.append(latency)
            if outcome == ACCEPTED:
                accepted += 1
                second.accepted += 1
                ack_accepted_ms.append(latency)
                sent_at[(auction << AMOUNT_BITS) | amount] = send
                accepted_ids[bids.bid_id[i]] = (auction, amount)
                extensions += bids.extended[i]
            else:
                name = names[outcome]
                rejections[name] += 1
                if name in UNKNOWN_OUTCOMES:
                    unknown_ids.add(bids.client_bid_id[i])
                else:
                    rejected_ids.add(bids.client_bid_id[i])
    window = (start_ns, stop_ns) if phase else None
    fanout_ms, last, unmatched = _deliveries(
        results, sent_at, elsewhere, seconds, start_ns, span, window
    )
    watchers: Counter[int] = Counter()
    for result in results:
        watchers.update(result.watchers_at_go if phase else result.watchers_kept)
    expected = sum(watchers[key >> AMOUNT_BITS] for key in sent_at)
    return Figures(
        sent=sent,
        accepted=accepted,
        answered=answered,
        rejections=dict(rejections.most_common()),
        unanswered=unanswered,
        ack_ms=ack_ms,
        ack_accepted_ms=ack_accepted_ms,
        fanout_ms=fanout_ms,
        fanout_last_ms=[(last[key] - sent_at[key]) / 1e6 for key in last],
        deliveries_expected=expected,
        deliveries_unmatched=unmatched,
        extensions=extensions,
        seconds=seconds,
        accepted_ids=accepted_ids,
        rejected_ids=rejected_ids,
        unknown_ids=unknown_ids,
        max_amount=max_amount,
        maxes_sent=maxes_sent,
        maxes_accepted=maxes_accepted,
        max_rejections=dict(max_rejections.most_common()),
        ack_max_ms=ack_max_ms,
        proxy_deliveries=sum(result.proxy_deliveries for result in results),
    )


def _deliveries(
    results: Sequence[Results],
    sent_at: Mapping[int, int],
    elsewhere: AbstractSet[int],
    seconds: list[Second],
    start_ns: int,
    span: int,
    window: tuple[int, int] | None,
) -> tuple[list[float], dict[int, int], int]:
    """Fan-out latencies, each bid's last delivery, and the deliveries matching no
    bid answered `accepted` (those received in `window`, when given)."""
    fanout_ms: list[float] = []
    last: dict[int, int] = {}
    unmatched = 0
    for result in results:
        for key, received in zip(result.delivery_key, result.delivery_ns, strict=True):
            send = sent_at.get(key)
            if send is None and key in elsewhere:
                continue
            if send is None:  # a bid whose answer never came, or sent by no one here
                if window is None or window[0] <= received < window[1]:
                    unmatched += 1
                continue
            latency = (received - send) / 1e6
            fanout_ms.append(latency)
            seconds[min(span - 1, max(0, (send - start_ns) // 1_000_000_000))].fanout_ms.append(
                latency
            )
            if received > last.get(key, 0):
                last[key] = received
    return fanout_ms, last, unmatched


def series(seconds: Iterable[Second]) -> dict[str, list[float | None]]:
    """Per second: bids sent and accepted, ack and fan-out p50/p99 (ms)."""
    out: dict[str, list[float | None]] = defaultdict(list)
    for second in seconds:
        out["sent"].append(second.sent)
        out["accepted"].append(second.accepted)
        ack, fan = percentiles(second.ack_ms), percentiles(second.fanout_ms)
        out["ack_p50_ms"].append(ack["p50"])
        out["ack_p99_ms"].append(ack["p99"])
        out["fanout_p50_ms"].append(fan["p50"])
        out["fanout_p99_ms"].append(fan["p99"])
    return dict(out)


# ---- the Markdown report ----------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _load(result: Mapping[str, Any]) -> str:
    load = result.get("load_average_1m_at_start")
    return f"{load:.2f}" if isinstance(load, float) else "unknown"


def latency_rows(result: Mapping[str, Any]) -> list[str]:
    rows = [
        "| latency (ms) | p50 | p95 | p99 | p99.9 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, prefix in (
        ("bid ack (send → bid_result), all answers", "ack"),
        ("bid ack, accepted bids only", "ack_accepted"),
        ("max ack (send → bid_result), maximums only", "ack_max"),
        ("fan-out (bid sent → each watcher has it)", "fanout"),
        ("fan-out, last watcher of the room", "fanout_last"),
    ):
        cells = [
            _cell(result.get(f"{prefix}_{q.replace('.', '')}_ms")) for q in (*QUANTILES, "max")
        ]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def markdown(result: Mapping[str, Any], png_name: str | None) -> str:
    """One run's report: configuration, latencies, rates, sockets, the ledger check."""
    config = result["config"]
    lines = [
        f"# `python -m bench rooms --scenario {config['scenario']}`",
        "",
        f"{result.get('git_commit') or 'no commit'}; {result['cpu_count']} cores "
        f"({result['machine']}), load average {_load(result)} at start; "
        f"server: {result['server_mode']}.",
        "",
        f"{config['auctions']:,} auctions, {config['bidders']:,} bidders, "
        f"{config['watchers']:,} watchers, {config['seconds']:g} s, "
        f"{config['processes']} generator processes; "
        + (
            f"offered {config['rate']:,.0f} bids/s (Poisson)."
            if config["scenario"] == "steady"
            else f"every bidder bids back within ~{config['think_ms']:g} ms (shrinking to a "
            "quarter by the end), inside each auction's last "
            f"{config['window_ms'] / 1000:g} s."
        ),
        "",
        *latency_rows(result),
        "",
        "| throughput and counts | value |",
        "| --- | ---: |",
    ]
    targets = result["targets"]
    for label, value in (
        ("accepted bids/s", result["accepted_bids_per_s"]),
        ("bids sent/s", result["sent_bids_per_s"]),
        ("offered bids/s (steady: arrivals, incl. no idle bidder)", result["offered_bids_per_s"]),
        ("bids answered / unanswered", f"{result['answered']:,} / {result['unanswered']:,}"),
        ("anti-sniping extensions", result["extensions"]),
        (
            "maximums sent / accepted / proxy bids in the ledger",
            f"{result['maxes']['sent']:,} / {result['maxes']['accepted']:,}"
            f" / {result['maxes']['proxy_bids_in_ledger']:,}",
        ),
        ("sockets connected (bidders + watchers)", result["sockets_connected"]),
        ("sockets failed to connect", result["sockets_failed"]),
        (
            "sockets dropped / of which kept up",
            f"{result['sockets_dropped']} / {result['sockets_dropped_kept_up']}",
        ),
        ("room events missed (seq gaps)", result["seq_gaps"]),
        (
            "deliveries expected / measured",
            f"{result['deliveries']['expected']:,} / {result['deliveries']['measured']:,}",
        ),
        ("ledger consistent", result["ledger_consistent"]),
        (
            "ack p99 ≤ 25 ms / fan-out p99 ≤ 50 ms",
            f"{_cell(targets['ack_p99_met'])} / {_cell(targets['fanout_p99_met'])}",
        ),
    ):
        lines.append(f"| {label} | {_cell(value)} |")
    lines += ["", "| rejection | bids |", "| --- | ---: |"]
    lines += [f"| {code} | {n:,} |" for code, n in result["rejections"].items()] or ["| none | 0 |"]
    lines += ["", "| who | CPU share of one core |", "| --- | ---: |"]
    server = result["server"]
    lines.append(f"| server process | {_cell(server.get('cpu_share'))} |")
    for gen in result["generator"]["processes"]:
        lines.append(
            f"| generator {gen['index']} (worst loop lag {gen['lag_max_ms']:.0f} ms) | "
            f"{_cell(gen['cpu_share'])} |"
        )
    lines.append(
        f"| whole machine, every core (busy share) | {_cell(result['machine_busy_share'])} |"
    )
    if "endings" in result:
        lines += ["", *endings_rows(result["endings"])]
    if png_name:
        lines += ["", f"![latency over time]({png_name})"]
    lines += [
        "",
        "Ledger check: "
        + ", ".join(f"{k} {v}" for k, v in result["ledger"].items() if k != "examples"),
        "",
    ]
    return "\n".join(lines)


def endings_rows(endings: Mapping[str, Any]) -> list[str]:
    """`--ending`: the auctions that ended during the bidding, and their if-bids."""
    answers, decided = endings["answers"], endings["decided_during_load"]
    first, last = endings["ends_after_start_s"]
    end_to_room = endings["end_to_room_ms"]
    rows = [
        f"Endings (`--ending {endings['mode']}`): {endings['auctions']:,} of "
        f"{endings['of_auctions']:,} auctions ended {first:g}–{last:g} s into the bidding, "
        f"if-bid and counter windows {endings['if_bid_window_ms']:,} ms.",
        "",
        "| endings | value |",
        "| --- | ---: |",
    ]
    for label, value in (
        ("ended during the load (a watcher had `ended`)", endings["ended_during_load"]),
        (
            "went to seller_decision / of which during the load",
            f"{endings['to_seller_decision']:,} / {endings['to_seller_decision_during_load']:,}",
        ),
        ("ended without a real bid (unsold)", endings["ended_without_bids"]),
        (
            "end → `ended` at the first watcher, p50 / p99 / max ms",
            " / ".join(_cell(end_to_room[q]) for q in ("p50", "p99", "max")),
        ),
        (
            "answers sent / taken / taken during the load",
            f"{answers['sent']:,} / {answers['taken']:,} / {answers['taken_during_load']:,}",
        ),
        ("answers refused", ", ".join(f"{k} {v}" for k, v in answers["refused"].items()) or "none"),
        (
            "decided during the load: accepted / declined / expired",
            f"{decided['accepted']:,} / {decided['declined']:,} / {decided['expired']:,}",
        ),
        (
            "if-bids at the check",
            ", ".join(f"{k} {v}" for k, v in endings["if_bids_at_the_check"].items()) or "none",
        ),
        ("bids refused `auction_ended` (sent as the auction ended)", endings["refused_after_end"]),
        ("reserve-protection bid events delivered", endings["platform_deliveries"]),
        ("ended auctions agree with their if-bids and bids", endings["consistent"]),
    ):
        rows.append(f"| {label} | {_cell(value)} |")
    return rows


def side_by_side_markdown(
    runs: Mapping[str, Mapping[str, Any]], keys: Sequence[str], ending: str
) -> str:
    """`--side-by-side`: steady without endings and with them, one run each."""
    without, with_ = runs["without"], runs["with"]
    lines = [
        f"# `python -m bench rooms --ending {ending} --side-by-side`",
        "",
        f"{with_.get('git_commit') or 'no commit'}; load average {_load(without)} at the "
        "first run's start.",
        "",
        f"| | steady | steady, `--ending {ending}` |",
        "| --- | ---: | ---: |",
    ]
    for key in keys:
        lines.append(f"| {key} | {_cell(without.get(key))} | {_cell(with_.get(key))} |")
    if "endings" in with_:
        lines += ["", *endings_rows(with_["endings"])]
    return "\n".join([*lines, ""])


def compare_markdown(
    runs: Mapping[str, Mapping[str, Any]], ledger: Mapping[str, Any] | None, notes: Sequence[str]
) -> str:
    """--compare: the variants side by side, the engine's ratios to each."""
    names = list(runs)
    engine = runs.get("engine")
    lines = [
        "# `python -m bench rooms --compare`",
        "",
        "| | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    keys = (
        "accepted_bids_per_s",
        "sent_bids_per_s",
        "ack_p50_ms",
        "ack_p99_ms",
        "ack_p999_ms",
        "fanout_p50_ms",
        "fanout_p99_ms",
        "unanswered",
        "sockets_dropped",
        "ledger_consistent",
    )
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_cell(runs[n].get(key)) for n in names) + " |")
    if engine is not None:
        for name in names:
            if name == "engine":
                continue
            other = runs[name]["accepted_bids_per_s"]
            ratio = engine["accepted_bids_per_s"] / other if other else None
            lines.append(
                f"| engine / {name}, accepted bids/s | "
                + " | ".join(_cell(ratio) if n == name else "" for n in names)
                + " |"
            )
    if ledger is not None:
        lines += [
            "",
            "Ledger level (`bench ledger`'s machinery, no sockets): write-behind "
            f"{_cell(ledger.get('writebehind_bids_per_s'))} bids/s, per-bid locks "
            f"{_cell(ledger.get('baseline_bids_per_s'))} bids/s, ratio "
            f"{_cell(ledger.get('ratio_vs_baseline'))}.",
        ]
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)
