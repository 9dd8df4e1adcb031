"""Writes python/migmon/_core.pyi from the Rust sources: every data class
(a struct marked ``#[cfg_attr(feature = "python", pyo3::pyclass ...)]``)
with its fields, types and doc comments, and the background runs. The Rust
struct is the one declaration of a field; ``tests/test_stubs.py`` fails when
the committed stub is out of date. Run: ``python scripts/gen_stubs.py``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "python" / "migmon" / "_core.pyi"

SCALARS = {
    "u8": "int",
    "u16": "int",
    "u32": "int",
    "u64": "int",
    "usize": "int",
    "f64": "float",
    "bool": "bool",
    "String": "str",
}
NAMED = {
    "Pattern": 'Literal["sequential", "random", "once"]',
    "PageSize": 'Literal["4k", "2m", "1g", "thp"]',
    "ReturnPath": 'Literal["preempt", "main"]',
    "VmSrcEnd": 'Literal["duration", "stopped", "peer_closed", "error"]',
}
PYCLASS = re.compile(r'#\[cfg_attr\(\s*feature = "python",\s*pyo3::pyclass\(')
STRUCT = re.compile(r"pub struct (\w+) \{(.*?)\n\}", re.S)
FIELD = re.compile(r"((?:\s*///[^\n]*\n|\s*#\[[^\n]*\]\n)*)\s*pub (\w+): ([^\n]+),\n")

# The background runs: (class, config, item type, result type, extra members).
RUNS = [
    (
        "DirtyWorkload",
        "DirtyConfig",
        "DirtySample | DirtyPause",
        "DirtySummary",
        [
            "@property\n    def phase(self) -> "
            'Literal["prefaulting", "dirtying", "stopping", "done"]: ...',
            "@property\n    def prefault_progress(self) -> tuple[int, int]:\n"
            '        """(pages prefaulted, total pages), 4 KiB pages."""',
            "@property\n    def region_address(self) -> int:\n"
            '        """Address of the dirtied region in this process."""',
            "@property\n    def page_size_bytes(self) -> int: ...",
            "def wait_prefaulted(self, timeout_s: float | None = None) -> bool:\n"
            '        """True once every page is prefaulted; False on timeout or end."""',
        ],
    ),
    ("VmSource", "VmSourceConfig", "VmSrcSample", "VmSrcSummary", []),
    (
        "VmDestination",
        "VmDestinationConfig",
        "VmConnected | VmPostcopy | VmDstSample | VmSessionSummary | VmRejected",
        "list[VmSessionSummary]",
        [
            "@property\n    def port(self) -> int: ...",
            "@property\n    def address(self) -> str: ...",
            '@property\n    def active(self) -> int:\n        """Sessions running now."""',
        ],
    ),
    (
        "EchoServer",
        "EchoServerConfig",
        "NewClient",
        "EchoStats",
        [
            "@property\n    def port(self) -> int: ...",
            "@property\n    def address(self) -> str: ...",
            'def stats(self) -> EchoStats:\n        """The counters so far."""',
        ],
    ),
    (
        "OneWayServer",
        "OneWayServerConfig",
        "NewClient | Baseline | DowntimeEvent",
        "OneWaySummary",
        [
            "@property\n    def port(self) -> int: ...",
            "@property\n    def address(self) -> str: ...",
            "def clients(self) -> list[ClientSummary]:\n"
            '        """Every client\'s figures so far (retired ones included)."""',
            "def recent_clients(self, n: int) -> list[ClientSummary]:\n"
            '        """Up to ``n`` clients being measured, the most recently heard first."""',
            "@property\n    def client_count(self) -> int:\n"
            '        """How many clients are being measured now."""',
        ],
    ),
    (
        "Prober",
        "ProbeConfig",
        "Baseline | DowntimeEvent | NoReply",
        "ProbeSummary",
        [
            "@property\n    def status(self) -> ProbeStatus:\n"
            '        """Live figures (sent, received, gaps, last RTT)."""',
        ],
    ),
]


def py_type(rust: str) -> str:
    rust = rust.strip()
    m = re.fullmatch(r"Option<(.+)>", rust)
    if m:
        return f"{py_type(m.group(1))} | None"
    m = re.fullmatch(r"Vec<(.+)>|\[(.+); .+\]", rust)
    if m:
        return f"list[{py_type(m.group(1) or m.group(2))}]"
    m = re.fullmatch(r"BTreeMap<(.+), (.+)>", rust)
    if m:
        return f"dict[{py_type(m.group(1))}, {py_type(m.group(2))}]"
    return SCALARS.get(rust) or NAMED.get(rust) or rust


def classes() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    out = []
    for path in sorted((ROOT / "rust").rglob("*.rs")):
        text = path.read_text()
        for m in PYCLASS.finditer(text):
            head = text[: m.start()]
            doc_lines: list[str] = []
            for line in reversed(head.rstrip("\n").splitlines()):
                line = line.strip()
                if line.startswith("///"):
                    doc_lines.insert(0, line[3:].strip())
                elif doc_lines:
                    break
            s = STRUCT.search(text, m.end())
            assert s is not None
            fields = []
            for f in FIELD.finditer(s.group(2) + "\n"):
                docs = " ".join(
                    x.strip()[3:].strip() for x in f.group(1).splitlines() if "///" in x
                )
                fields.append((f.group(2), py_type(f.group(3)), docs))
            out.append((s.group(1), " ".join(doc_lines), fields))
    return out


def render() -> str:
    lines = [
        '"""Stubs of the extension module (written by scripts/gen_stubs.py from the',
        'Rust sources: do not edit). Import from :mod:`migmon`, not from here."""',
        "",
        "from collections.abc import Iterator",
        "from types import TracebackType",
        "from typing import Any, Literal, final",
        "",
        "from typing_extensions import Self",
        "",
        "__version__: str",
        "DEFAULT_PORT: int",
        "#: Upper bounds (seconds) of the latency buckets metrics use; one more, unbounded, follows.",
        "LATENCY_BUCKETS_S: list[float]",
        "",
        "def parse_size_mb(text: str) -> int:",
        '    """A size such as ``512``, ``16G`` or ``2T`` in MB (MiB)."""',
        "",
    ]
    for name, doc, fields in classes():
        is_config = name.endswith("Config")
        lines += ["@final", f"class {name}:", f'    """{doc}"""', ""]
        for fname, ftype, fdoc in fields:
            lines += [
                "    @property",
                f"    def {fname}(self) -> {ftype}:",
                f'        """{fdoc}"""',
            ]
        if is_config:
            args = ", ".join(f"{f}: {t} = ..." for f, t, _ in fields)
            args = args.replace("size_mb: int = ...", "size_mb: int | str = ...")
            args = args.replace("rate_mb_s: int | None = ...", "rate_mb_s: int | str | None = ...")
            args = args.replace(
                "max_bandwidth_mb_s: int | None = ...", "max_bandwidth_mb_s: int | str | None = ..."
            )
            lines += [
                f"    def __init__(self, *, {args}) -> None: ...",
                "    def replace(self, **changes: Any) -> Self:",
                '        """A copy with the given fields changed (validated again)."""',
            ]
        lines += [
            "    def to_dict(self) -> dict[str, Any]:",
            '        """Every field, under the same keys as the JSON output."""',
            "",
        ]
    for name, cfg, item, result, extra in RUNS:
        lines += [
            "@final",
            f"class {name}:",
            f'    """A background run of a :class:`{cfg}` (or of its keyword arguments)."""',
            "",
            f"    def __init__(self, config: {cfg} | None = None, **kwargs: Any) -> None: ...",
            "    @property",
            f"    def config(self) -> {cfg}: ...",
            f"    def next(self, timeout_s: float = 0.1) -> {item} | None:",
            '        """The next item, waiting at most ``timeout_s``."""',
            f"    def drain(self) -> list[{item}]:",
            '        """Every item ready now, without waiting."""',
            "    def __iter__(self) -> Iterator[" + item + "]: ...",
            f"    def __next__(self) -> {item}: ...",
            "    @property",
            "    def done(self) -> bool: ...",
            "    def request_stop(self) -> None: ...",
            f"    def stop(self) -> {result}:",
            '        """Ends the run; its result (the same object every time)."""',
            f"    def wait(self, timeout_s: float | None = None) -> {result} | None:",
            '        """Waits for the run to end by itself; None on timeout."""',
            "    def __enter__(self) -> Self: ...",
            "    def __exit__(",
            "        self,",
            "        et: type[BaseException] | None,",
            "        e: BaseException | None,",
            "        tb: TracebackType | None,",
            "    ) -> bool: ...",
        ]
        for x in extra:
            lines.append("    " + x)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/gen_stubs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
