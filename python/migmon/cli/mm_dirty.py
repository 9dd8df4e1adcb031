"""``mig_mon mm_dirty``: the memory dirty workload on the command line.

Text output is the original's, line for line (header, banners, one
``dirty-rate: ...`` line per second, the latency histogram on exit), plus a
summary at the end. With ``--json`` stdout carries only JSON Lines (config,
one sample per interval, summary) and the human text goes to stderr.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, TextIO

import typer

from migmon import (
    DirtyConfig,
    DirtyPause,
    DirtySample,
    DirtySummary,
    DirtyWorkload,
    __version__,
)
from migmon.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_LIMIT,
    Show,
    drive,
    quiet_broken_pipe,
    say,
    verdict,
)
from migmon.cli._flags import Given, config_flags, flag_of, make_config
from migmon.errors import ResourceError
from migmon.metrics import DirtyMetrics, serving
from migmon.output import emit, emit_config, print_summary
from migmon.output.dirty import (
    BANNER_DIRTY,
    BANNER_PREFAULT,
    header_lines,
    latency_buckets_lines,
    pause_line,
    sample_line,
    summary_lines,
)

_PAGES_PER_GB = 256 * 1024


def _prefault_progress(run: DirtyWorkload, out: TextIO) -> None:
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
    try:
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
    except KeyboardInterrupt:
        # Stopped while prefaulting: the summary starts a line of its own.
        if dots:
            out.write("\n")
            out.flush()
        raise
    say("done", out)


@config_flags(DirtyConfig)
def mm_dirty_command(
    given: Given,
    show: Show,
    max_pause_ms: Annotated[
        float | None,
        typer.Option(
            "--max-pause-ms",
            metavar="MS",
            min=0.0,
            help="A verdict for automation: exit 5 when a pause is longer; the line after "
            "the summary names it.",
            show_default="none",
        ),
    ] = None,
) -> int:
    """Generate a constant memory dirty workload.

    Dirties one byte in every 4 KiB page (also on huge pages), checks that
    each page still holds what was last written there, and reports the dirty
    rate every second. Stop with Ctrl-C, SIGTERM or SIGHUP, or give
    --duration; a page that lost its content ends the run with exit code 4.
    """
    cfg = make_config(DirtyConfig, given)
    out = sys.stderr if show.json_out else sys.stdout
    cpus = len(os.sched_getaffinity(0))
    if cfg.threads > cpus and cfg.pattern != "once":
        say(
            f"note: {cfg.threads} dirtying threads on {cpus} CPUs take turns; "
            "a thread waiting for its turn shows as a pause",
            sys.stderr,
        )

    def on_sample(s: DirtySample | DirtyPause) -> None:
        if show.json_out:
            emit(s)
        if not show.quiet:
            say(sample_line(s) if isinstance(s, DirtySample) else pause_line(s), out)

    with quiet_broken_pipe(), serving(show.metrics, show.metrics_linger) as exporter:
        try:
            run = DirtyWorkload(cfg)
        except ResourceError as e:
            # The core names the config field that skips the check; the
            # user typed a flag.
            if e.skipped_by is None:
                raise
            flag = flag_of(DirtyConfig, e.skipped_by)
            raise ResourceError(f"{e.reason} ({flag} to try anyway)") from None
        watch = exporter.attach(DirtyMetrics(run, cfg.rate_mb_s)) if exporter else None
        if show.json_out:
            emit_config(
                "mm_dirty",
                cfg,
                version=__version__,
                page_size_bytes=run.page_size_bytes,
                region_address=run.region_address,
                dirty_step_bytes=4096,
            )
        for line in header_lines(cfg, run.page_size_bytes) + BANNER_PREFAULT:
            say(line, out)

        def start() -> None:
            _prefault_progress(run, out)
            if run.phase == "done":
                return
            if cfg.pattern == "once":
                say("[Goes to sleep; please hit ctrl-c to stop this program]", out)
            else:
                for line in BANNER_DIRTY:
                    say(line, out)

        summary = drive(run, on_sample, before=start, metrics=watch)
        if cfg.record_latency and summary.buckets_us is not None and not show.json_out:
            for line in latency_buckets_lines(summary.buckets_us):
                say(line, out)
        print_summary(
            "mm_dirty summary", summary.to_dict(), summary_lines(summary), out, show.details
        )
        if show.json_out:
            emit(summary)
        if max_pause_ms is not None and _verdict(summary, max_pause_ms, show.json_out, out):
            return EXIT_LIMIT
    if not summary.completed_prefault:
        # Interrupted before anything was dirtied (the README's 130).
        return EXIT_INTERRUPTED
    return 0


def _verdict(summary: DirtySummary, limit: float, json_out: bool, out: TextIO) -> bool:
    """--max-pause-ms: one line (and a JSON object); True when a pause broke it."""
    from migmon import pause_over
    from migmon.output.downtime import wall_time

    return verdict(
        ("pause", "max_pause_ms", limit),
        "pause",
        pause_over(summary, limit),
        lambda p: f"pause {p.index} at {wall_time(p.start_unix_s)}, {p.length_ms:.1f} (ms)",
        {"pause_index": "index", "length_ms": "length_ms"},
        (json_out, out),
    )
