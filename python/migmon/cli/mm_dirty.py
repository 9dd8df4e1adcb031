"""``mig_mon mm_dirty``: the memory dirty workload on the command line.

Text output is the original's, line for line (header, banners, one
``dirty-rate: ...`` line per second, the latency histogram on exit), plus a
summary at the end. With ``--json`` stdout carries only JSON Lines (config,
one sample per interval, summary) and the human text goes to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Annotated, TextIO

import typer

from migmon import __version__
from migmon._core import DirtyRun, DirtySample, parse_size_mb
from migmon.cli._common import ignore_signals, quiet_broken_pipe, say, stop_on_signals
from migmon.dirty import DirtyOptions
from migmon.errors import MigmonError
from migmon.report import (
    dirty_sample_json,
    dirty_sample_line,
    dirty_summary_json,
    dirty_summary_lines,
    emit_json,
    latency_buckets_lines,
    print_summary,
)

_RULE = "+------------------------+"
_BANNER_PREFAULT = [_RULE, "|   Prefault Memory      |", _RULE]
_BANNER_DIRTY = [_RULE, "|   Start Dirty Memory   |", _RULE]
_PAGES_PER_GB = 256 * 1024


def _size(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size_mb(value)
    except MigmonError as e:
        raise typer.BadParameter(str(e)) from None


def _positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter("must be greater than zero")
    return value


def _header(opts: DirtyOptions, run: DirtyRun, out: TextIO) -> None:
    rate = "Maximum" if opts.rate_mb_s is None else f"{opts.rate_mb_s} (MB/s)"
    say(f"Binary version: \t{__version__}", out)
    say(f"Test memory size: \t{opts.size_mb} (MB)", out)
    say(f"Backend page size: \t{run.page_size_bytes} (Bytes)", out)
    say("Dirty step size: \t4096 (Bytes)", out)
    say(f"Dirty memory rate: \t{rate}", out)
    say(f"Dirty pattern: \t\t{run.pattern}", out)
    say(f"Recording latencies: \t{'yes' if opts.record_latency else 'no'}", out)
    if opts.threads > 1:
        say(f"Dirty threads: \t\t{opts.threads}", out)


def _prefault_progress(run: DirtyRun, out: TextIO) -> None:
    """A progress bar on a terminal; the original's dot per GB otherwise."""
    if out.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

        total = run.prefault_progress[1]
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=Console(file=out),
            transient=False,
        ) as bar:
            task = bar.add_task("prefault", total=total)
            while run.phase == "prefaulting":
                bar.update(task, completed=run.prefault_progress[0])
                time.sleep(0.05)
            bar.update(task, completed=run.prefault_progress[0])
        return
    dots = 0
    while True:
        prefaulting = run.phase == "prefaulting"
        gb = run.prefault_progress[0] // _PAGES_PER_GB
        if gb > dots:
            out.write("." * (gb - dots))
            out.flush()
            dots = gb
        if not prefaulting:
            break
        time.sleep(0.05)
    say("done", out)


def mm_dirty_command(
    memory: Annotated[
        str, typer.Option("-m", "--memory", help="Memory size (MB; suffix M, G or T).")
    ] = "512",
    rate: Annotated[
        str | None,
        typer.Option(
            "-r", "--rate", help="Dirty rate in MB/s (suffix M, G, T); default: unlimited."
        ),
    ] = None,
    pattern: Annotated[
        str,
        typer.Option("-p", "--pattern", help="sequential (seq), random (ran) or once."),
    ] = "sequential",
    latency: Annotated[
        bool, typer.Option("-L", "--latency", help="Record and report memory access latencies.")
    ] = False,
    page_size: Annotated[
        str,
        typer.Option("-P", "--page-size", help="Backing pages: 4k, 2m, 1g (hugetlb) or thp."),
    ] = "4k",
    threads: Annotated[
        int, typer.Option("-T", "--threads", help="Dirtying threads (the rate is shared).")
    ] = 1,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Stop after this many seconds, then print a summary."),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="JSON Lines on stdout; the human text goes to stderr."),
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip the integrity check (peak rate).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the available-memory check.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between reports.")] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for the random pattern.")] = None,
) -> int:
    """Generate a constant memory dirty workload.

    Dirties one byte in every 4 KiB page (also on huge pages), checks that
    each page still holds what was last written there, and reports the dirty
    rate every second. Stop with Ctrl-C or SIGTERM, or give --duration.
    """
    size_mb = _size(memory)
    assert size_mb is not None
    _positive(duration)
    if not interval > 0:
        raise typer.BadParameter("must be greater than zero", param_hint="'--interval'")
    opts = DirtyOptions(
        size_mb=size_mb,
        rate_mb_s=_size(rate),
        pattern=pattern,
        page_size=page_size,
        threads=threads,
        record_latency=latency,
        verify=not no_verify,
        duration_s=duration,
        interval_s=interval,
        force=force,
        seed=seed,
    )
    out = sys.stderr if json_out else sys.stdout
    with quiet_broken_pipe(), stop_on_signals():
        run = opts.start()
        with contextlib.suppress(KeyboardInterrupt):
            _run(opts, run, out, json_out)
        ignore_signals()
        # Samples that completed while we were being interrupted.
        while (s := run.next_sample(0.0)) is not None:
            _sample(s, out, json_out)
        summary = run.stop()
        if opts.record_latency and summary.buckets is not None and not json_out:
            for line in latency_buckets_lines(summary.buckets):
                say(line, out)
        print_summary(
            "mm_dirty summary",
            dirty_summary_json(summary, opts.verify),
            dirty_summary_lines(summary, opts.verify),
            out,
        )
        if json_out:
            emit_json(dirty_summary_json(summary, opts.verify))
    return 0


def _sample(s: DirtySample, out: TextIO, json_out: bool) -> None:
    if json_out:
        emit_json(dirty_sample_json(s))
    else:
        say(dirty_sample_line(s), out)


def _run(opts: DirtyOptions, run: DirtyRun, out: TextIO, json_out: bool) -> None:
    if json_out:
        emit_json(
            {
                "type": "config",
                "tool": "mm_dirty",
                "version": __version__,
                "size_mb": opts.size_mb,
                "rate_mb_s": opts.rate_mb_s,
                "pattern": run.pattern,
                "page_size_bytes": run.page_size_bytes,
                "region_address": run.region_address,
                "dirty_step_bytes": 4096,
                "threads": opts.threads,
                "record_latency": opts.record_latency,
                "verify": opts.verify,
                "interval_s": opts.interval_s,
                "duration_s": opts.duration_s,
            }
        )
    _header(opts, run, out)
    for line in _BANNER_PREFAULT:
        say(line, out)
    _prefault_progress(run, out)
    if run.phase == "done":
        return
    if opts.pattern == "once":
        say("[Goes to sleep; please hit ctrl-c to stop this program]", out)
    else:
        for line in _BANNER_DIRTY:
            say(line, out)
    while True:
        s = run.next_sample(0.1)
        if s is not None:
            _sample(s, out, json_out)
        elif run.done:
            return
