"""Configurations are built and checked in Rust, once: strict types, ranges
and names, every failure a ConfigError (also a ValueError) naming the
argument; runs share one shape (idempotent stop, iteration, context)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import migmon
from migmon import ConfigError, DirtyConfig, ProbeConfig, VmSourceConfig


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"size_mb": True}, "size_mb: expected"),
        ({"size_mb": -1}, "size_mb: must not be negative"),
        ({"size_mb": 2**64}, "size_mb:"),
        ({"threads": 1.5}, "threads: expected a whole number, not the float 1.5$"),
        # A float that is whole is still a float, and said as one (was "not 2").
        ({"threads": 2.0}, "threads: expected a whole number, not the float 2.0$"),
        ({"size_mb": 1e3}, "size_mb: expected a size .*, not the float 1000.0$"),
        ({"threads": 0}, "^threads: must be between"),
        ({"threads": 10_000}, "^threads: must be between"),
        ({"interval_s": float("inf")}, "interval"),
        ({"interval_s": 0.001}, "^interval_s: must be at least"),
        ({"duration_s": -1}, "duration"),
        ({"verify": "no"}, "verify:"),
        ({"seed": -1}, "seed: must not be negative"),
        ({"pattern": "zigzag"}, "unknown pattern"),
        ({"sise_mb": 5}, "unknown field"),
    ],
)
def test_dirty_config_refuses_bad_values(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        DirtyConfig(**kw)


def test_config_errors_are_value_errors_and_never_leak_flags() -> None:
    with pytest.raises(ValueError) as ei:
        VmSourceConfig(host="x", preempt=True)
    assert "--" not in str(ei.value)
    with pytest.raises(ConfigError, match="host is required"):
        VmSourceConfig()
    with pytest.raises(ConfigError, match="return path"):
        VmSourceConfig(host="x", return_path="sideways")


@given(st.one_of(st.floats(allow_nan=True), st.integers(), st.booleans(), st.text(max_size=5)))
def test_probe_interval_is_a_number_in_range_or_a_config_error(v: object) -> None:
    try:
        c = ProbeConfig(server="127.0.0.1", interval_ms=v)
    except ConfigError:
        return
    assert 0.01 <= c.interval_ms <= 366 * 86400 * 1000


def test_runs_share_one_shape() -> None:
    with migmon.EchoServer(bind="127.0.0.1", port=0) as srv:
        with migmon.Prober(server="127.0.0.1", port=srv.port, interval_ms=2, count=20) as p:
            items = list(p)
            assert p.done
            r = p.stop()
            assert r is p.stop()
            assert p.wait() is r
        assert any(isinstance(m, migmon.Baseline) for m in items)
        assert r.received == 20 and r.to_dict()["received"] == 20
        first = srv.next(1.0)
        assert isinstance(first, migmon.NewClient)
        assert srv.stop() is srv.stop()
    assert srv.done


def test_a_vm_field_is_declared_once() -> None:
    # connect_timeout_s was added in rust/vm/src.rs (the field), its use in
    # the source, and cli/vm.py (the flag): the rest follows from the field.
    c = VmSourceConfig(host="x", connect_timeout_s=2.5)
    assert c.connect_timeout_s == 2.5
    assert c.to_dict()["connect_timeout_s"] == 2.5
    assert "connect_timeout_s=2.5" in repr(c)
    assert VmSourceConfig(host="x").connect_timeout_s == 10.0
    with pytest.raises(ConfigError, match=r"^connect_timeout_s: ") as e:
        c.replace(connect_timeout_s=0)
    assert e.value.field == "connect_timeout_s"
    assert e.value.reason is not None and e.value.reason.startswith("must be greater than 0")


def test_pace_step_range_and_the_tools_own_cpu() -> None:
    for bad in (0.0, 0.01, 1001, float("nan")):
        with pytest.raises(ConfigError, match=r"^pace_ms: must be between"):
            DirtyConfig(pace_ms=bad)
    s = migmon.mm_dirty(16, 50, duration_s=0.5, pace_ms=5)
    assert 0 < s.cpu_s < 0.5 and s.cpu_pct == pytest.approx(100 * s.cpu_s / s.duration_s)
    assert 40 < s.rate_mb_s < 55


def test_configs_compare_hash_copy_and_pickle_by_their_fields() -> None:
    import copy
    import pickle

    from migmon import ProbeConfig, VmDestinationConfig

    a = DirtyConfig(size_mb="1G", rate_mb_s=5)
    b = DirtyConfig(size_mb=1024, rate_mb_s=5)
    assert a == b and hash(a) == hash(b) and len({a, b, DirtyConfig()}) == 2
    assert a != DirtyConfig() and a != "DirtyConfig"
    for c in (a, ProbeConfig(server="h", count=3), VmSourceConfig(host="x", channels=2),
              VmDestinationConfig(port=0)):  # fmt: skip
        assert pickle.loads(pickle.dumps(c)) == c
        assert copy.copy(c) == c and copy.deepcopy(c) == c
