"""PNG plots of the bench's runs (matplotlib, headless).

matplotlib is in the project's `bench` and `dev` extras; it is imported when a
plot is drawn, so a run without it still measures and reports, and says the
plot was skipped (`unavailable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def unavailable() -> str | None:
    """Why no plot can be drawn here; None when matplotlib is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        return f"matplotlib cannot be imported ({err}): pip install '.[bench]' to draw plots"
    return None


def latency_over_time(
    path: Path,
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    targets_ms: Mapping[str, float],
) -> Path:
    """Two panels over the run's seconds: ack and fan-out p50/p99 (log ms, with the
    targets as dashed lines) above, bids sent and accepted per second below."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    seconds = list(range(len(series["sent"])))
    figure, (latency, rate) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, height_ratios=(3, 2), layout="constrained"
    )
    for key, label, style in (
        ("ack_p50_ms", "ack p50", ("tab:blue", "-", 1.0)),
        ("ack_p99_ms", "ack p99", ("tab:blue", "-", 2.0)),
        ("fanout_p50_ms", "fan-out p50", ("tab:orange", "-", 1.0)),
        ("fanout_p99_ms", "fan-out p99", ("tab:orange", "-", 2.0)),
    ):
        values = [float("nan") if v is None else v for v in series[key]]
        color, line, width = style
        latency.plot(seconds, values, color=color, linestyle=line, linewidth=width, label=label)
    for name, value in targets_ms.items():
        color = "tab:blue" if name.startswith("ack") else "tab:orange"
        latency.axhline(value, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
        latency.annotate(
            f"target {name} {value:g} ms",
            (0, value),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=7,
            color=color,
        )
    latency.set_yscale("log")
    _plain_ticks(latency)
    latency.set_ylabel("ms (by the bid's send second)")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(loc="upper right", fontsize=8)
    latency.set_title(title, fontsize=10)
    rate.plot(seconds, series["sent"], color="tab:gray", label="bids sent/s")
    rate.plot(seconds, series["accepted"], color="tab:green", label="accepted/s")
    rate.set_xlabel("seconds into the run")
    rate.set_ylabel("bids per second")
    rate.grid(True, alpha=0.3)
    rate.legend(loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def compare_bars(
    path: Path, rates: Mapping[str, float], p99s: Mapping[str, float | None], *, title: str
) -> Path:
    """--compare: accepted bids/s and ack p99 per variant, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rates)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    left.bar(names, [rates[n] for n in names], color="tab:green")
    left.set_ylabel("accepted bids/s")
    left.grid(True, axis="y", alpha=0.3)
    right.bar(names, [p99s[n] or 0.0 for n in names], color="tab:blue")
    right.set_ylabel("bid ack p99 (ms)")
    right.set_yscale("log")
    _plain_ticks(right)
    right.grid(True, axis="y", which="both", alpha=0.3)
    figure.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def cluster_phases(
    path: Path,
    p99s: Mapping[str, Mapping[str, float | None]],
    kills: Sequence[tuple[float, float]],
    *,
    title: str,
    targets_ms: Mapping[str, float],
) -> Path:
    """`bench cluster`: each phase's p99s side by side (ms, the targets dashed),
    and each kill's failover gap in seconds, the part until the leases were owned
    again below the rest (until the new owners decided bids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(
        1, 2, figsize=(11, 4.5), width_ratios=(3, 2), layout="constrained"
    )
    phases = list(p99s)
    measures = list(next(iter(p99s.values()), {}))
    width = 0.8 / max(1, len(phases))
    colors = ("tab:gray", "tab:blue", "tab:purple", "tab:orange", "tab:green")
    for k, phase in enumerate(phases):
        xs = [m + (k - (len(phases) - 1) / 2) * width for m in range(len(measures))]
        values = [p99s[phase][name] or 0.0 for name in measures]
        bars = left.bar(xs, values, width, label=phase, color=colors[k % len(colors)])
        left.bar_label(bars, [f"{v:.1f}" if v else "" for v in values], fontsize=7)
    left.set_xticks(range(len(measures)), measures, fontsize=8)
    for name, value in targets_ms.items():
        if name.startswith(("ack", "fan-out")):
            left.axhline(value, linestyle="--", linewidth=0.8, color="tab:red", alpha=0.7)
            left.annotate(f"target {name} {value:g} ms", (-0.4, value), fontsize=7)
    left.set_ylabel("p99, ms")
    left.grid(True, axis="y", alpha=0.3)
    left.legend(fontsize=8)
    numbers = [str(n + 1) for n in range(len(kills))]
    leases = [lease for lease, _ in kills]
    rest = [gap - lease for lease, gap in kills]
    right.bar(numbers, leases, color="tab:blue", label="until the leases are owned again")
    right.bar(numbers, rest, bottom=leases, color="tab:cyan", label="until the owner decides bids")
    gap_target = targets_ms.get("failover gap p99")
    if gap_target is not None:
        right.axhline(gap_target / 1000, linestyle="--", linewidth=0.8, color="tab:red")
    right.set_xlabel("kill")
    right.set_ylabel("failover gap, s")
    right.grid(True, axis="y", alpha=0.3)
    right.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _plain_ticks(axes: Axes) -> None:
    """Log-scale ticks as plain numbers (5, 10, 50), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
