"""The extension's stubs are written from the Rust sources (one declaration
per field); they must match what is committed, and the classes they name
must be the ones the extension has."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import migmon
from migmon import _core

ROOT = Path(__file__).resolve().parent.parent


def test_committed_stub_is_up_to_date() -> None:
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_stubs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr


def test_result_attributes_are_the_json_keys() -> None:
    s = migmon.mm_dirty(16, 100, duration_s=0.3, interval_s=0.1, record_latency=True)
    d = s.to_dict()
    assert d["type"] == "summary"
    for key, value in d.items():
        if key != "type":
            assert hasattr(s, key), key
            if not isinstance(value, dict):
                assert getattr(s, key) == value, key
    assert set(d["latency"]) == set(s.latency.to_dict()) if s.latency else True
    assert "p99_9_ns" in d["latency"]
    cfg = migmon.DirtyConfig(size_mb="1G", rate_mb_s=5)
    assert cfg.size_mb == 1024 and cfg.to_dict()["size_mb"] == 1024
    assert cfg.replace(threads=2).threads == 2
    assert "DirtyConfig(size_mb=1024" in repr(cfg)


def _stub_classes() -> dict[str, set[str]]:
    """Each class of the stub with the members it declares (a run's
    include the shared protocol's)."""
    tree = ast.parse((ROOT / "python" / "migmon" / "_core.pyi").read_text())
    members: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            own = {
                n.name if isinstance(n, ast.FunctionDef) else n.target.id  # type: ignore[union-attr]
                for n in node.body
                if isinstance(n, ast.FunctionDef)
                or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
            }
            for base in node.bases:
                if isinstance(base, ast.Subscript) and isinstance(base.value, ast.Name):
                    own |= members.get(base.value.id, set())
            members[node.name] = own
    return members


def test_every_stubbed_class_and_member_exists_and_nothing_is_left_out() -> None:
    for name, members in _stub_classes().items():
        if name.startswith("_"):
            continue  # the run protocol, stated once in the stub only
        cls = getattr(_core, name)
        for m in members:
            assert hasattr(cls, m), f"{name}.{m} is in the stub, not in the module"
        public = {m for m in dir(cls) if not m.startswith("_")}
        assert public <= members, f"{name}: {sorted(public - members)} are not in the stub"
