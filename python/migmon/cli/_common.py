"""What the sub-commands share: one-line errors, the one run loop with its
signal handling, output helpers (the configuration flags: _flags.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from migmon.output import stamp

if TYPE_CHECKING:
    from migmon.metrics import ToolMetrics

#: Exit codes a script can use (the README lists them).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_REPLY = 3
EXIT_CORRUPTION = 4
#: A verdict flag's limit was broken (client --max-downtime-ms, mm_dirty
#: --max-pause-ms).
EXIT_LIMIT = 5
#: Standard output was a pipe whose reader went away (as a shell reports a
#: writer that SIGPIPE ended).
EXIT_BROKEN_PIPE = 141
#: Stopped by Ctrl-C (SIGINT) before the run started, or in its start-up
#: (as a shell reports a process that SIGINT ended).
EXIT_INTERRUPTED = 130
#: A bug in mig_mon (an unexpected exception, a panic in the core).
EXIT_INTERNAL = 70

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="JSON Lines on stdout; the human text (live lines too) goes to stderr."
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("-q", "--quiet", help="No live per-interval lines; only the summary.")
]
DetailsOpt = Annotated[
    bool, typer.Option("--details", help="After the summary, every figure in a table.")
]
TimestampsOpt = Annotated[
    bool,
    typer.Option(
        "--timestamps", help="Start every text line with the wall-clock time (to the us)."
    ),
]
MetricsOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        metavar="[HOST:]PORT",
        help="Serve the run's figures to Prometheus (OpenMetrics) on this port while it "
        "goes on; a port alone listens on every address. Needs the 'metrics' extra.",
        show_default="off",
    ),
]
MetricsLingerOpt = Annotated[
    float,
    typer.Option(
        "--metrics-linger",
        metavar="S",
        min=0.0,
        help="With --metrics: after the run, keep serving its final figures this long, "
        "for the last scrape.",
    ),
]


@dataclass(frozen=True)
class Show:
    """How a command shows its run: JSON Lines on stdout (the text then
    goes to stderr), live lines or not, the figure table after the summary,
    time stamps, and its metrics (``--metrics``, ``--metrics-linger``). The
    options that set them are declared once (:data:`SHOW_OPTIONS`) and
    given to every long-running command by ``config_flags``."""

    json_out: bool = False
    quiet: bool = False
    details: bool = False
    timestamps: bool = False
    metrics: str | None = None
    metrics_linger: float = 0.0

    @property
    def out(self) -> TextIO:
        """Where the human text goes."""
        return sys.stderr if self.json_out else sys.stdout

    def live(self, line: str) -> None:
        """A per-interval line, unless quiet."""
        if not self.quiet:
            say(line, self.out)


def fail_line(msg: str) -> None:
    """Prints ``mig_mon: msg`` as a single line on stderr."""
    one = " ".join(str(msg).split())
    if sys.stderr is None:  # closed (2>&-): the exit code says it
        return
    with contextlib.suppress(OSError):
        sys.stderr.write(f"mig_mon: {one}\n")
        sys.stderr.flush()


def say(line: str, out: TextIO) -> None:
    """Writes one line and flushes, so a pipe reader sees it at once."""
    out.write(stamp() + line + "\n")
    out.flush()


def verdict(
    limit: tuple[str, str, float],
    kept_by: str,
    broke: Any | None,
    describe: Callable[[Any], str],
    fields: dict[str, str],
    show: tuple[bool, TextIO],
) -> bool:
    """A limit's verdict (--max-downtime-ms, --max-pause-ms): one line, and
    a JSON object with --json. ``limit`` is (its name in the line, its JSON
    key, its value); ``broke`` the item that broke it (or None), said by
    ``describe``, its attributes in the JSON by ``fields`` (key: attribute).
    True when broken."""
    name, key, value = limit
    json_out, out = show
    said = f"BROKEN by {describe(broke)}" if broke is not None else f"kept by every {kept_by}"
    say(f"{name} limit {value:g} (ms): {said}", out)
    if json_out:
        from migmon.output import emit_json

        found = {k: getattr(broke, a) if broke is not None else None for k, a in fields.items()}
        emit_json({"type": "verdict", key: value, "broken": broke is not None, **found})
    return broke is not None


def ignore_signals() -> None:
    """While wrapping up, a second Ctrl-C or SIGTERM must not cut the
    summary in half."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@contextlib.contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """``mig_mon ... | head`` ends quietly when the reader goes away: the
    run stops (see :func:`drive`), nothing more is written, and the exit
    code is a shell's for a writer killed by SIGPIPE (141)."""
    try:
        yield
    except BrokenPipeError:
        # What is still buffered for the closed pipe goes nowhere, also at
        # exit, when Python flushes stdout again.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise typer.Exit(EXIT_BROKEN_PIPE) from None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP all end a run through the same clean path
    (KeyboardInterrupt), also when the shell started us with SIGINT ignored
    (a background job of a script)."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        yield
    finally:
        for s, h in old.items():
            if h is not None:
                signal.signal(s, h)


def _observed(metrics: ToolMetrics, on_item: Callable[[Any], None]) -> Callable[[Any], None]:
    def both(item: Any) -> None:
        metrics.observe(item)
        on_item(item)

    return both


def drive(
    run: Any,
    on_item: Callable[[Any], None],
    on_idle: Callable[[], None] | None = None,
    *,
    before: Callable[[], None] | None = None,
    metrics: ToolMetrics | None = None,
) -> Any:
    """The one run loop of every command: items to ``on_item`` as they come,
    ``on_idle`` between polls (live lines), until the run ends or a signal;
    then the items left, and the run's result (``stop()``, which may raise, e.g. a corruption).
    ``before`` runs first, already under the same signal handling.
    ``metrics`` (--metrics) sees every item first."""
    if metrics is not None:
        on_item = _observed(metrics, on_item)
    try:
        with signals_interrupt(), contextlib.suppress(KeyboardInterrupt):
            if before is not None:
                before()
            while True:
                item = run.next(0.1)
                if item is not None:
                    on_item(item)
                elif run.done:
                    break
                if on_idle is not None:
                    on_idle()
    except BaseException:
        # The output failed (a closed pipe) or a bug: the run still stops.
        run.request_stop()
        with contextlib.suppress(Exception):
            run.stop()
        raise
    ignore_signals()
    output_deadline()
    run.request_stop()
    # Iterating a stopping run yields what is left and ends with the run.
    for item in run:
        on_item(item)
    return run.stop()


#: How long stdout or stderr may stay full while the command winds up: a
#: reader that stopped reading (a stalled pipe) must not keep the process
#: alive with its signals ignored.
OUTPUT_DEADLINE_S = 10.0
_watchdogs: list[Any] = []


def output_deadline(seconds: float = OUTPUT_DEADLINE_S) -> None:
    """From now (the command winds up, its signals ignored): when stdout or
    stderr takes nothing for ``seconds`` (a pipe that stays full: its
    reader stopped reading), say so on stderr if it can and exit 1. A slow
    reader, or the command's own work meanwhile (a final check of a large
    region), does not count. Called off by :func:`output_done`."""
    import select
    import threading
    import time

    done = threading.Event()

    def full() -> bool:
        for fd in (1, 2):
            try:
                _, writable, _ = select.select([], [fd], [], 0)
            except (OSError, ValueError):
                continue  # closed: nothing waits on it
            if not writable:
                return True
        return False

    def watch() -> None:
        since: float | None = None
        while not done.wait(0.25):
            if not full():
                since = None
                continue
            now = time.monotonic()
            since = now if since is None else since
            if now - since >= seconds:
                with contextlib.suppress(OSError):
                    os.set_blocking(2, False)
                    os.write(
                        2,
                        b"mig_mon: the output was not read for "
                        + f"{seconds:g} s (a stalled reader): exiting\n".encode(),
                    )
                os._exit(EXIT_FAILURE)

    try:
        threading.Thread(target=watch, name="output-deadline", daemon=True).start()
    except RuntimeError:
        return  # no thread to spare (a thread or memory limit): no guard
    _watchdogs.append(done)


def output_done() -> None:
    """The command returned: no deadline applies any more."""
    while _watchdogs:
        _watchdogs.pop().set()


#: The options of :class:`Show`, by field (each command's help ends with them).
SHOW_OPTIONS: dict[str, tuple[Any, Any]] = {
    "json_out": (JsonOpt, False),
    "quiet": (QuietOpt, False),
    "details": (DetailsOpt, False),
    "timestamps": (TimestampsOpt, False),
    "metrics": (MetricsOpt, None),
    "metrics_linger": (MetricsLingerOpt, 0.0),
}
