"""The Python API: blocking and background forms, typed results, errors."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import migmon
from migmon import ConfigError, CorruptionError, DirtyWorkload, MigmonError, ResourceError


def test_public_surface() -> None:
    assert migmon.__version__
    for name in migmon.__all__:
        assert hasattr(migmon, name), name
    assert issubclass(CorruptionError, MigmonError)


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["", "M", "g", "T", "GiB"]))
def test_parse_size(n: int, unit: str) -> None:
    mul = {"": 1, "M": 1, "g": 1024, "T": 1024 * 1024, "GiB": 1024}[unit]
    assert migmon.parse_size_mb(f"{n}{unit}") == n * mul


@given(st.text(max_size=8))
def test_parse_size_never_crashes(text: str) -> None:
    try:
        assert migmon.parse_size_mb(text) > 0
    except ConfigError as e:
        assert "invalid size" in str(e)


def test_blocking_run_returns_typed_summary() -> None:
    seen: list[migmon.DirtySample] = []
    s = migmon.mm_dirty(
        32, "200", duration_s=1.6, interval_s=0.5, record_latency=True, on_sample=seen.append
    )
    # Pauses come too when a busy machine keeps the worker off the CPU.
    assert [x.index for x in seen if isinstance(x, migmon.DirtySample)] == [0, 1, 2]
    assert [x.index for x in s.samples] == [0, 1, 2]
    assert 150 < s.rate_mb_s < 210
    assert s.latency is not None and s.latency.count == s.bytes // 4096
    assert s.buckets_us is not None and len(s.buckets_us) == 21
    assert s.verified_pages == 32 * 256
    with pytest.raises(AttributeError):
        s.rate_mb_s = 0  # type: ignore[misc]


def test_background_form_reads_samples_while_running() -> None:
    with DirtyWorkload(size_mb=64, rate_mb_s=100, interval_s=0.2, threads=2) as w:
        assert w.wait_prefaulted(30)
        time.sleep(0.7)
        # Samples, and on a busy machine a pause among them.
        early = [x for x in w.drain() if isinstance(x, migmon.DirtySample)]
        assert len(early) >= 2
        assert all(x.rate_mb_s > 0 for x in early)
        summary = w.stop()
        assert summary is w.stop()  # idempotent
    assert len(summary.samples) >= len(early)
    assert summary.completed_prefault


def test_lost_page_raises_corruption_with_details() -> None:
    w = DirtyWorkload(size_mb=16, rate_mb_s=64, pattern="random")
    assert w.wait_prefaulted(30)
    fd = os.open("/proc/self/mem", os.O_RDWR)
    try:
        os.pwrite(fd, b"\0", w.region_address + 77 * 4096)
    finally:
        os.close(fd)
    deadline = time.monotonic() + 20
    while not w.done and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(CorruptionError) as ei:
        w.stop()
    assert (ei.value.page, ei.value.offset, ei.value.found) == (77, 77 * 4096, 0)


def test_bad_values_raise_config_or_resource_errors() -> None:
    with pytest.raises(ConfigError):
        DirtyWorkload(size_mb=16, pattern="nope")
    with pytest.raises(ConfigError):
        DirtyWorkload(size_mb=1, threads=1000)
    with pytest.raises(ConfigError):
        DirtyWorkload(size_mb="0")
    with pytest.raises(ResourceError):
        DirtyWorkload(size_mb="64T")


def test_keyboard_interrupt_stops_blocking_call_cleanly() -> None:
    script = textwrap.dedent(
        """
        import time, migmon
        t = time.monotonic()
        try:
            migmon.mm_dirty(64, 100, duration_s=600)
        except KeyboardInterrupt:
            print("interrupted after", round(time.monotonic() - t, 1))
        """
    )
    # Python turns SIGINT into KeyboardInterrupt only if SIGINT is not
    # ignored when it starts, and a shell's background job (CI started with
    # `&`) ignores it: the child starts as a foreground program would.
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.startswith("interrupted after"), (out, err)


def test_rate_is_smooth_in_10ms_windows() -> None:
    # The README's smoothness as accuracy bounds that hold on a busy 2-core
    # machine (its figures, 99% of 10 ms windows within 10% and 100 ms
    # windows within 2%, are a quiet machine's: benches/dirty_pacing.py
    # measures them). A 10 ms window holds ten 1 ms steps, so one step moved
    # across its edge by wake-up jitter is a 10% error: on a quiet machine
    # 98.5% of windows at worst over 20 runs; beside a QEMU guest and the
    # rest of the suite, 94.6-96.9%. The bound, 90%, still fails coarse
    # pacing: 3 ms steps put 1-3% of windows within 10% (5 ms steps, 74-100%
    # by the sampler's phase, are told apart only by the bench).
    # A window in which mm_dirty itself says its worker did not run (a
    # pause of 1 ms or more: the machine ran something else) measures the
    # machine, not the pacer, and is left out; a busy machine may leave out
    # some, never most. 100 ms windows are ten consecutive samples without
    # a pause: the pacer makes up small delays within them (quiet machine:
    # every one within 2%; beside cargo bench on both cores: 14 of 16), and
    # the run as a whole within 2%.
    # When the machine keeps the worker off the CPU in most windows (a TCG
    # guest and a build beside the suite left 7 of 19 100 ms windows
    # pause-free), a run measures the machine: up to three runs, then the
    # test says it could not judge rather than pass or fail on noise.
    for _ in range(3):
        s = migmon.mm_dirty(256, 200, duration_s=2.0, interval_s=0.01, pause_ms=1)
        samples = s.samples[5:]
        rates = [x.rate_mb_s for x in samples if x.pauses == 0]
        groups = [samples[i : i + 10] for i in range(0, len(samples) - 9, 10)]
        hundred = [
            statistics.mean(x.rate_mb_s for x in g) for g in groups if not any(x.pauses for x in g)
        ]
        if len(rates) >= 0.8 * len(samples) and len(hundred) >= 0.5 * len(groups):
            break
    else:
        pytest.skip(f"the machine kept mm_dirty off the CPU: {len(hundred)} of {len(groups)} "
                    "100 ms windows without a pause")  # fmt: skip
    assert len(rates) > 150, len(rates)
    close = [r for r in rates if abs(r - 200) <= 20]
    assert len(close) >= 0.90 * len(rates), sorted(rates)[:: max(1, len(rates) // 20)]
    assert sum(abs(r - 200) <= 10 for r in hundred) >= 0.85 * len(hundred), hundred
    assert abs(s.rate_mb_s - 200) <= 4, s.rate_mb_s
