"""``mig_mon switchover``: each migration's outage split into QEMU's
phases; ``mig_mon qmp_record``: QEMU's side recorded while migrations run."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from migmon.cli._common import EXIT_FAILURE, JsonOpt, say, signals_interrupt
from migmon.errors import ConfigError

#: Exit code when a switchover check failed (QEMU's marks outside the gap).
EXIT_CHECK = 3


def _clock(spec: str) -> tuple[str, object]:
    from migmon.switchover import Clock

    name, sep, rest = spec.partition("=")
    parts = rest.split(",")
    if not sep or not name or not parts[0] or len(parts) > 3:
        raise ConfigError(f"--clock is FILE=NAME[,OFFSET_S[,ERROR_MS]], not '{spec}'")
    try:
        off = float(parts[1]) if len(parts) > 1 else 0.0
        err = float(parts[2]) if len(parts) > 2 else 0.0
    except ValueError:
        raise ConfigError(f"--clock {spec}: the offset and error are numbers") from None
    if not (abs(off) < 1e6 and 0 <= err < 1e6):
        raise ConfigError(f"--clock {spec}: offset or error out of range")
    return name, Clock(parts[0], off, err)


def switchover_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            help="client/server --json, spike logs, mm_dirty --json, qmp_record output, QMP "
            "or virsh event logs, QEMU logs with trace lines, a pcap.",
        ),
    ],
    json_out: JsonOpt = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="One bar per migration cut into its phases (.png/.svg).",
            show_default="none",
        ),
    ] = None,
    clock: Annotated[
        list[str] | None,
        typer.Option(
            "--clock",
            metavar="FILE=NAME[,OFFSET_S[,ERROR_MS]]",
            help="FILE was written on another host's clock: seconds to add, and how far the "
            "clocks may still disagree (phases finer than that are not split).",
            show_default="one clock",
        ),
    ] = None,
) -> int:
    """Explain each migration's outage: the probes' gap split into QEMU's
    switchover phases (stop, final RAM, devices, destination load, announce,
    resume) and what came after, with the devices that took longest."""
    import json

    from migmon.switchover import SourceError, explain_files
    from migmon.switchover.report import plot_switchovers, text_lines
    from migmon.switchover.sources import read_inputs

    clocks = dict(_clock(c) for c in clock or [])
    for name in clocks:
        if not any(name in (str(p), p.name) for p in inputs):
            raise ConfigError(f"--clock {name}: not one of the input files")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"unsupported image type '{plot.suffix}' (use .png, .svg or .pdf)")
    try:
        sws = explain_files(inputs, clocks)  # type: ignore[arg-type]
        kinds = read_inputs(list(inputs)).kinds
    except SourceError as e:
        raise ConfigError(f"cannot read {e}") from None
    if json_out:
        for s in sws:
            sys.stdout.write(json.dumps({"type": "switchover", **s.to_dict()}) + "\n")
        sys.stdout.flush()
    for line in text_lines(sws, kinds):
        say(line, sys.stderr if json_out else sys.stdout)
    if plot is not None:
        from migmon.plot import MatplotlibMissing

        try:
            plot_switchovers(sws, plot)
        except MatplotlibMissing as e:
            say(f"mig_mon: {e}", sys.stderr)
            return EXIT_FAILURE
        except OSError as e:
            say(f"mig_mon: cannot write {plot}: {e.strerror or e}", sys.stderr)
            return EXIT_FAILURE
        say(f"wrote {plot}", sys.stderr if json_out else sys.stdout)
    if any(not ok for s in sws for ok in s.checks.values()):
        return EXIT_CHECK
    return 0


def qmp_record_command(
    src: Annotated[
        str, typer.Argument(metavar="SRC_QMP", help="The source's monitor: unix:PATH or HOST:PORT.")
    ],
    dst: Annotated[
        str | None,
        typer.Argument(metavar="[DST_QMP]", help="The destination's monitor.", show_default=False),
    ] = None,
    output: Annotated[
        Path,
        typer.Option("-o", "--output", metavar="FILE", help="JSON Lines written here (appended)."),
    ] = Path("qmp.jsonl"),
    trace: Annotated[
        bool,
        typer.Option(
            "--trace",
            help="Turn on QEMU's downtime trace points (they print to QEMU's log: run it "
            "with -msg timestamp=on and -D FILE, or read libvirt's domain log).",
        ),
    ] = False,
    poll_ms: Annotated[
        float,
        typer.Option(
            "--poll-ms", metavar="MS", help="query-migrate period while a migration runs."
        ),
    ] = 200.0,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            metavar="S",
            min=0.001,
            help="Stop after this many seconds.",
            show_default="until stopped",
        ),
    ] = None,
    until_complete: Annotated[
        bool,
        typer.Option(
            "--until-complete",
            help="Stop 1 s after a migration completed, failed or was cancelled.",
        ),
    ] = False,
) -> int:
    """Record QEMU's side of migrations: QMP events (with the events
    capability on) and query-migrate while one runs, as JSON Lines on the
    wall clock; then give the file to 'mig_mon switchover'."""
    from migmon.switchover import QmpRecorder

    monitors = {"src": src} | ({"dst": dst} if dst else {})
    rec = QmpRecorder(output, monitors, trace=trace, poll_s=poll_ms / 1e3)
    rec.start()
    for w in rec.warnings:
        say(f"mig_mon: {w}", sys.stderr)
    say(f"recording {', '.join(monitors.values())} to {output}", sys.stderr)
    t0 = time.monotonic()
    ended_at: float | None = None
    try:
        with signals_interrupt():
            while duration is None or time.monotonic() - t0 < duration:
                time.sleep(0.1)
                if until_complete and ended_at is None and _ended(output):
                    ended_at = time.monotonic()
                if ended_at is not None and time.monotonic() - ended_at >= 1.0:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        rec.stop()
    say(
        f"recorded {rec.counts.get('qmp_event', 0)} events, "
        f"{rec.counts.get('query_migrate', 0)} query-migrate replies",
        sys.stderr,
    )
    return 0


def _ended(path: Path) -> bool:
    try:
        tail = path.read_bytes()[-65536:]
    except OSError:
        return False
    return (
        any(f'"status":"{s}"'.encode() in tail for s in ("completed", "failed", "cancelled"))
        and b'"type":"qmp_event"' in tail
    )
