"""Every numeric argument of every command, with values drawn in and around
its range (and what users mistype: signs, exponents, inf, nan, units, huge
integers): the command either runs or says why in one line, with the exit
code of bad usage, a refused resource or a failed run, and never a
traceback or an internal error."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cli, free_port

EDGE_TEXT = [
    "0",
    "-0",
    "-1",
    "1",
    "0.0",
    "1e-9",
    "1e-300",
    "1e300",
    "-1e300",
    "inf",
    "-inf",
    "nan",
    "2**64",
    "18446744073709551616",
    "9223372036854775808",
    "0x10",
    "1_000",
    " 5",
    "5 ",
    "",
    "1G",
    "1g",
    "1T",
    "16M",
    "1.5",
    "1,5",
    "one",
    "+3",
    "--",
    "1e3",
]


def values(small: int = 100_000, edges: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Text a user could type where a number goes."""
    return st.one_of(
        st.sampled_from(EDGE_TEXT + list(edges)),
        st.integers(-(2**70), 2**70).map(str),
        st.integers(-5, small).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.floats(-10, small).map(lambda f: f"{f:g}"),
    )


#: Exit codes a run may end with: done, failed (a resource, the network),
#: bad usage, no reply (client).
ALLOWED = {0, 1, 2, 3}
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check(args: list[str]) -> None:
    r = cli(*args)
    assert r.returncode in ALLOWED, (args, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, (args, r.stderr)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        assert lines and lines[-1].startswith("mig_mon:"), (args, r.stderr)
        if r.returncode == 2:
            assert len(lines) == 1, (args, r.stderr)


def _udp_port() -> str:
    return str(free_port(socket.SOCK_DGRAM))


def _tcp_port() -> str:
    return str(free_port())


# (command before the value, the flag, what follows): every command is kept
# short (--duration 0.05) and small (-m 16), so valid values run quickly.
def _dirty(flag: str) -> Callable[[str], list[str]]:
    base = ["mm_dirty", "-m", "16", "-q", "--duration", "0.05"]
    return lambda v: [*base, flag, v]


def _client(interval: str, *extra: str, duration: str = "0.05") -> list[str]:
    return [
        "client",
        "127.0.0.1",
        interval,
        *extra,
        "-p",
        _udp_port(),
        "-q",
        "--duration",
        duration,
    ]


def _vm_source(flag: str) -> Callable[[str], list[str]]:
    return lambda v: [
        *["vm", "-s", "-H", "127.0.0.1", "-p", _tcp_port()],
        *[flag, v, "--duration", "0.05"],
    ]


CASES: dict[str, Callable[[str], list[str]]] = {
    "mm_dirty -r": _dirty("-r"),
    "mm_dirty -T": _dirty("-T"),
    "mm_dirty --duration": lambda v: ["mm_dirty", "-m", "16", "-q", "--duration", v],
    "mm_dirty --interval": _dirty("--interval"),
    "mm_dirty --pause-ms": _dirty("--pause-ms"),
    "mm_dirty --pace-ms": _dirty("--pace-ms"),
    "mm_dirty --seed": lambda v: [*_dirty("--seed")(v), "-p", "random"],
    "client INTERVAL_MS": lambda v: _client(v),
    "client --threshold-ms": lambda v: _client("5", "--threshold-ms", v),
    "client --count": lambda v: _client("1", "--count", v),
    # Twenty probes at most, so that a valid duration still ends quickly.
    "client --duration": lambda v: _client("1", "--count", "20", duration=v),
    "client -p": lambda v: ["client", "127.0.0.1", "5", "-p", v, "-q", "--duration", "0.05"],
    "server_rr --duration": lambda v: ["server_rr", "-p", _udp_port(), "-q", "--duration", v],
    "server --threshold-ms": lambda v: [
        *["server", "/dev/null", "-p", _udp_port(), "-q"],
        *["--threshold-ms", v, "--duration", "0.05"],
    ],
    "vm -s -S": _vm_source("-S"),
    "vm -s --channels": _vm_source("--channels"),
    "vm -s --max-bandwidth": _vm_source("--max-bandwidth"),
    "vm -s --interval": _vm_source("--interval"),
    "vm -s --connect-timeout": _vm_source("--connect-timeout"),
    "vm -d --duration": lambda v: [
        "vm",
        "-d",
        "-p",
        _tcp_port(),
        "--bind",
        "127.0.0.1",
        "--duration",
        v,
    ],
}


@pytest.mark.parametrize("case", sorted(set(CASES) - {"mm_dirty -T"}))
@SETTINGS
@given(value=values())
def test_numeric_arguments_run_or_say_why(case: str, value: str) -> None:
    args = CASES[case](value)
    if "--duration" in case and _is_long(value):
        # A valid long duration would run for real: cut it short instead.
        return
    check(args)


#: What a user types where a count goes, minus what would start a thousand
#: threads (1_000 is a valid integer to Python): each costs seconds.
SMALL_EDGES = [t for t in EDGE_TEXT if t not in ("1_000", "1e3")]


@SETTINGS
@given(
    value=st.one_of(
        st.sampled_from([*SMALL_EDGES, "1024", "1025"]),
        st.integers(-5, 64).map(str),
        st.integers(-(2**70), 2**70).map(str),
    )
)
def test_thread_counts_run_or_say_why(value: str) -> None:
    """-T: a thousand threads take a second to start on two CPUs, so the
    values that run are drawn small; the limit (1024) is among the edges."""
    # Paced: a thousand unpaced threads on two CPUs take turns for seconds.
    check([*CASES["mm_dirty -T"](value), "-r", "100"])


@SETTINGS
@given(
    value=st.one_of(
        # Sizes that would allocate gigabytes (1G, 1_000) left out.
        st.sampled_from([t for t in SMALL_EDGES if not t.endswith(("G", "g", "T"))]),
        st.integers(-(2**70), 2**70).map(str),
        st.integers(-5, 64).map(str),
        st.sampled_from(["64T", "16E", "1P"]),
    )
)
def test_memory_sizes_run_or_say_why(value: str) -> None:
    """-m: only small or absurd values (a valid 20 GB would be allocated)."""
    check(["mm_dirty", "-m", value, "-q", "--duration", "0.05"])


def _is_long(value: str) -> bool:
    try:
        v = float(value.replace("_", ""))
    except ValueError:
        return False
    return v == v and 0.5 < v < float("inf") and v <= 366 * 86400
