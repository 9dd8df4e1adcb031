"""The README is a guide people follow: its tour runs as written, and every
flag its tables document exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    nxt = text.find("\n## ", start + len(title))
    return text[start : nxt if nxt != -1 else len(text)]


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    block = re.search(r"```console\n(.*?)```", section("## A tour on one machine"), re.S)
    assert block, "no console block in the tour"
    commands = [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]
    assert len(commands) >= 8
    bindir = Path(sys.executable).parent
    script = ["set -euo pipefail", f'export PATH="{bindir}:$PATH"']
    for c in commands:
        script.append(c)
        if c.rstrip().endswith("&"):
            # Until the server listens (a busy machine starts it slowly).
            port = re.search(r"-p (\d+)", c)
            assert port, c
            script.append(
                f"for _ in $(seq 300); do ss -lntuH | grep -q ':{port.group(1)} ' && break;"
                " sleep 0.1; done"
            )
    script.append("wait")
    for f in ("/tmp/mm_dirty.png", "/tmp/vm_src.svg"):
        Path(f).unlink(missing_ok=True)
    p = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Summary: sent 200, received 200" in p.stdout
    assert Path("/tmp/mm_dirty.png").stat().st_size > 1000
    assert Path("/tmp/vm_src.svg").stat().st_size > 1000


@pytest.mark.parametrize("sub", ["mm_dirty", "vm"])
def test_documented_flags_exist(sub: str) -> None:
    title = {"mm_dirty": "## `mig_mon mm_dirty`", "vm": "## Emulated migration streams: `vm`"}
    table = section(title[sub])
    flags = set(re.findall(r"^\| `(-[^`]*)`", table, re.M))
    assert flags, table[:200]
    help_text = run_cli(sub, "-h").stdout
    for cell in flags:
        for flag in re.findall(r"--?[A-Za-z][\w-]*", cell):
            assert flag in help_text, f"{flag} documented for {sub} but not in its -h"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_there_are_python_examples() -> None:
    assert len(_python_blocks()) >= 4


@pytest.mark.parametrize("n", range(len(_python_blocks())))
def test_every_python_example_runs_as_written(n: int) -> None:
    """Each ```python block of the README, run from the checkout's root."""
    code = _python_blocks()[n]
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=300, cwd=README.parent, check=False,
    )  # fmt: skip
    assert p.returncode == 0, code + "\n" + p.stderr[-3000:]


def test_ci_runs_the_install_section_then_the_test_command() -> None:
    """CI's first steps are the README's: its install section as written
    (scripts/readme-install.sh runs every command of it but the tests),
    then the README's test command."""
    steps = [
        line
        for line in (README.parent / ".ci/run").read_text().splitlines()
        if line.startswith("./scripts/")
    ]
    block = re.search(r"```sh\n(.*?)```", section("## Test"), re.S)
    assert block
    assert steps[:2] == ["./scripts/readme-install.sh", block.group(1).strip()]
    first = re.search(r"```sh\n(.*?)```", section("## Install and run"), re.S)
    assert first and block.group(1).strip() in first.group(1).splitlines()
