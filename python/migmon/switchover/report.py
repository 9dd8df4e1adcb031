"""The switchover breakdown for a person (text), for a program (JSON Lines)
and at a glance (one bar per migration, cut into its phases)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migmon.switchover.explain import BOUNDARIES, Switchover

__all__ = ["plot_switchovers", "text_lines"]


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _clock(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1e6):06d}"


def text_lines(sws: Sequence[Switchover], kinds: dict[str, str]) -> list[str]:
    """The report: per migration its phases (ms from the first boundary), what
    QEMU and the guest said beside it, and what would split it further."""
    out = ["inputs: " + ", ".join(f"{k} ({v})" for k, v in kinds.items())]
    if not sws:
        out.append("no switchover found: no STOP/RESUME, no downtime trace, no probe gap")
        return out
    for s in sws:
        out.append("")
        head = f"migration {s.index} ({s.kind}, {s.status})"
        if s.outage_ms is not None:
            head += (
                f": outage {s.outage_ms:.1f} ms seen by {s.outage_source}, "
                f"last reply at {_clock(s.last_reply_unix_s)}"
            )
        elif s.stop_unix_s is not None:
            head += f": STOP at {_clock(s.stop_unix_s)}"
        out.append(head)
        if s.phases:
            out.append(f"  {'phase':<38} {'from (ms)':>10} {'length (ms)':>12}  what took longest")
            for p in s.phases:
                unc = f" +-{p.uncertainty_ms:.2f}" if p.uncertainty_ms else ""
                devs = ", ".join(f"{i} {ms:.2f} ms" for i, ms in p.devices)
                row = f"  {p.label:<38} {p.start_ms:>10.2f} {p.length_ms:>12.2f}{unc}  {devs}"
                out.append(row.rstrip())
                if p.note:
                    out.append(f"  {'':<38}   ({p.note})")
        out.append(
            f"  QEMU downtime {_f(s.qemu_downtime_ms, 0)} ms, STOP->RESUME "
            f"{_f(s.stop_to_resume_ms, 2)} ms; guest paused {_f(s.guest_pause_ms)} ms "
            f"(mm_dirty); probe resolution {_f(s.resolution_ms, 2)} ms"
        )
        if s.after_resume_ms is not None:
            out.append(
                f"  after RESUME: {s.after_resume_ms:.1f} ms until the first reply; "
                f"unexplained (beyond one probe interval on either side): "
                f"{_f(s.unexplained_ms)} ms"
            )
        for src, ms in s.also_seen:
            out.append(f"  also seen by {src}: {ms:.1f} ms")
        bad = [k for k, ok in s.checks.items() if not ok]
        if bad:
            out.append("  checks FAILED: " + ", ".join(bad))
        for n in s.notes:
            out.append(f"  note: {n}")
    out.append("")
    out.append(
        "phases: from the boundary on the line before to the one named; (ms) from the "
        "first boundary (the last reply, or QEMU's stop when the guest still answered after "
        "it: then the last reply is a row); +- is how far the clocks of the two ends may "
        "disagree"
    )
    return out


#: One colour per boundary kind, so a phase has the same colour in every bar.
_COLOURS = {
    "stop": "#bbbbbb",
    "vm_stopped": "#9e9e9e",
    "ram_saved": "#1f77b4",
    "devices_saved": "#aec7e8",
    "src_done": "#7f7f7f",
    "dst_loaded": "#2ca02c",
    "bh_enter": "#98df8a",
    "announced": "#ff7f0e",
    "resume": "#d62728",
    "first_reply": "#9467bd",
}


def plot_switchovers(sws: Sequence[Switchover], output: Path, title: str | None = None) -> Any:
    """A Gantt: one bar per migration on its own time axis (ms from the last
    reply), cut into its phases; QEMU's downtime marked on each bar."""
    from migmon.plot import MatplotlibMissing

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MatplotlibMissing("plotting needs matplotlib: pip install 'mig_mon[plot]'") from None
    rows = [s for s in sws if s.phases]
    fig, ax = plt.subplots(figsize=(10, 2.4 + 0.55 * max(1, len(rows))))
    labels = {b.key: b.label for b in BOUNDARIES}
    shown: set[str] = set()
    for y, s in enumerate(rows):
        for p in s.phases:
            lab = f"-> {labels[p.key]}" if p.key not in shown else None
            shown.add(p.key)
            ax.barh(
                y,
                p.length_ms,
                left=p.start_ms,
                color=_COLOURS.get(p.key, "#cccccc"),
                edgecolor="white",
                linewidth=0.5,
                label=lab,
            )
        if s.qemu_downtime_ms is not None and s.stop_unix_s and s.last_reply_unix_s:
            x = (s.stop_unix_s - s.last_reply_unix_s) * 1e3
            ax.plot(
                [x, x + s.qemu_downtime_ms],
                [y + 0.42, y + 0.42],
                color="black",
                lw=2,
                label="QEMU's downtime" if y == 0 else None,
            )
        total = sum(p.length_ms for p in s.phases)
        ax.text(total, y, f" {total:.1f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{s.index}: {s.kind}" for s in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms from the last reply before the outage (or QEMU's stop, if earlier)")
    right = max((sum(p.length_ms for p in s.phases) for s in rows), default=1.0)
    ax.set_xlim(0, right * 1.15)
    ax.set_title(title or "Where each migration's outage went")
    handles, names = ax.get_legend_handles_labels()
    legend_rows = (len(names) + 3) // 4
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=7, frameon=False)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, min(0.5, (0.25 + 0.2 * legend_rows) / height), 1, 1))
    fig.savefig(output, dpi=120)
    return fig
