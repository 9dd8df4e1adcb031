"""One declaration per field: every configuration field has its flag in
the core's table (or is set by a flag that stands for several fields),
every flag is in its command's help with the configuration's own default,
and the stub states the same default. A field added without its flag, a
flag whose default drifted, or a stale stub fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_one_line_error, cli
from migmon import (
    DirtyConfig,
    EchoServerConfig,
    OneWayServerConfig,
    ProbeConfig,
    VmDestinationConfig,
    VmSourceConfig,
)
from migmon.cli._flags import flags_of

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: dict[Any, str] = {
    DirtyConfig: "mm_dirty",
    ProbeConfig: "client",
    EchoServerConfig: "server_rr",
    OneWayServerConfig: "server",
    VmSourceConfig: "vm",
    VmDestinationConfig: "vm",
}
#: Fields a flag of several fields sets: vm's -t picks precopy and postcopy.
DERIVED = {(VmSourceConfig, "precopy"), (VmSourceConfig, "postcopy")}


def _help(command: str) -> str:
    return " ".join(cli(command, "-h").stdout.split())


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda c: c.__name__)
def test_every_field_has_one_flag(cls: Any) -> None:
    flagged = [f.field for f in flags_of(cls)]
    assert len(flagged) == len(set(flagged)), flagged
    assert set(flagged) <= set(cls.DEFAULTS), set(flagged) - set(cls.DEFAULTS)
    missing = {f for f in cls.DEFAULTS if f not in flagged and (cls, f) not in DERIVED}
    assert not missing, f"{cls.__name__}: no flag for {sorted(missing)}"


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda c: c.__name__)
def test_every_flag_is_in_the_help_with_its_default(cls: Any) -> None:
    text = _help(COMMANDS[cls])
    for f in flags_of(cls):
        names = f.names.replace("/", ", ")
        assert names in text, f"{f.names} is not in '{COMMANDS[cls]} -h'"
        blurb = " ".join(f.help.split())
        default = cls.DEFAULTS[f.field]
        if f.takes in ("switch", "negated"):
            shown = blurb
        elif f.shown_default:
            shown = f"{blurb} [default: ({f.shown_default})]"
        elif default is None or default == "":
            shown = blurb
        else:
            shown = f"{blurb} [default: {default}]"
        assert shown in text, f"{COMMANDS[cls]} -h: {shown!r}"
        for name in f.choices:
            assert name in blurb, f"{f.names}: the help does not name {name!r}"


def _stub_defaults() -> dict[str, dict[str, Any]]:
    tree = ast.parse((ROOT / "python" / "migmon" / "_core.pyi").read_text())
    out: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for fn in node.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                args = fn.args
                out[node.name] = {
                    a.arg: ast.literal_eval(d)
                    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                    if d is not None
                }
    return out


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda c: c.__name__)
def test_the_stub_states_every_default(cls: Any) -> None:
    assert _stub_defaults()[cls.__name__] == cls.DEFAULTS


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["mm_dirty", "-T", "0"], "-T/--threads: "),
        (["mm_dirty", "--pace-ms", "0"], "--pace-ms: "),
        (["mm_dirty", "-P", "3k"], "-P/--page-size: unknown page size '3k'"),
        (["client", "127.0.0.1", "0.001"], "INTERVAL_MS: must be at least"),
        (["client", "127.0.0.1", "--count", "0"], "--count: must be at least 1"),
        (["server", "--threshold-ms", "-1"], "--threshold-ms: must be greater than 0"),
        (["server_rr", "--duration", "0"], "--duration: must be greater than 0"),
        (["vm", "-d", "--max-connections", "0"], "--max-connections: must be between"),
        (["vm", "-s", "-H", "x", "--channels", "65"], "--channels: at most 64"),
    ],
    ids=" ".join,
)
def test_a_bad_value_names_its_flag(args: list[str], flag: str) -> None:
    msg = assert_one_line_error(cli(*args), code=2)
    assert re.search(re.escape(flag), msg), msg
