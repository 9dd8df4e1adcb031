"""Writes python/migmon/_core.pyi from the Rust sources: every data class
(a struct declared in a ``crate::pydata!`` block)
with its fields, types and doc comments, and the background runs. The Rust
struct is the one declaration of a field; ``tests/test_stubs.py`` fails when
the committed stub is out of date. Run: ``python scripts/gen_stubs.py``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from migmon import _core

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
TEXT_ENUM = re.compile(r'pub enum (\w+): "[^"]*" \{(.*?)\n    \}', re.S)
PYDATA = re.compile(r"crate::pydata! \{\n(.*?)\n\}\n", re.S)
STRUCT = re.compile(r"pub struct (\w+) \{(.*?)\n    \}", re.S)
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
            "@property\n    def max_connections(self) -> int:\n"
            '        """Connections served at once: max_connections, or fewer where the '
            'descriptor limit allows fewer (5 each)."""',
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


def text_enums() -> dict[str, str]:
    """Each ``text_enum!`` of the Rust sources as a Literal of its names."""
    out = {}
    for path in sorted((ROOT / "rust").rglob("*.rs")):
        for m in TEXT_ENUM.finditer(path.read_text()):
            names = re.findall(r'^\s*\w+ = ("[^"]+")', m.group(2), re.M)
            out[m.group(1)] = f"Literal[{', '.join(names)}]"
    return out


NAMED = text_enums()


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


def classes() -> list[tuple[str, str, list[tuple[str, str, str, str]]]]:
    out = []
    for path in sorted((ROOT / "rust").rglob("*.rs")):
        for m in PYDATA.finditer(path.read_text()):
            block = m.group(1)
            doc = " ".join(
                line.strip()[3:].strip()
                for line in block.split("pub struct", 1)[0].splitlines()
                if line.strip().startswith("///")
            )
            s = STRUCT.search(block)
            assert s is not None, block[:200]
            fields = []
            for f in FIELD.finditer(s.group(2) + "\n"):
                docs = " ".join(
                    x.strip()[3:].strip() for x in f.group(1).splitlines() if "///" in x
                )
                ftype = py_type(f.group(3))
                # A size is also read from its text ("16G").
                sized = 'de::size"' in f.group(1) or 'de::opt_size"' in f.group(1)
                argtype = ftype.replace("int", "int | str", 1) if sized else ftype
                fields.append((f.group(2), ftype, docs, argtype))
            out.append((s.group(1), doc, fields))
    return out


def _literal(v: object) -> str:
    """A default as the stub writes it."""
    return f'"{v}"' if isinstance(v, str) else repr(v)


def render() -> str:
    lines = [
        '"""Stubs of the extension module (written by scripts/gen_stubs.py from the',
        'Rust sources: do not edit). Import from :mod:`migmon`, not from here."""',
        "",
        "from collections.abc import Iterator",
        "from types import TracebackType",
        "from typing import Any, ClassVar, Generic, Literal, TypeVar, final",
        "",
        "from typing_extensions import Self",
        "",
        "__version__: str",
        "DEFAULT_PORT: int",
        "#: Upper bounds (s) of the latency buckets metrics use; an unbounded one follows.",
        "LATENCY_BUCKETS_S: list[float]",
        "",
        "def parse_size_mb(text: str) -> int:",
        '    """A size such as ``512``, ``16G`` or ``2T`` in MB (MiB)."""',
        "",
    ]
    for name, doc, fields in classes():
        is_config = name.endswith("Config")
        lines += ["@final", f"class {name}:", f'    """{doc}"""', ""]
        for fname, ftype, fdoc, _ in fields:
            lines += [
                "    @property",
                f"    def {fname}(self) -> {ftype}:",
                f'        """{fdoc}"""',
            ]
        if is_config:
            defaults = getattr(_core, name).DEFAULTS
            args = ", ".join(f"{f}: {t} = {_literal(defaults[f])}" for f, _, _, t in fields)
            lines += [
                "    #: How the command line spells each field (its options are built from it).",
                "    FLAGS: ClassVar[list[dict[str, Any]]]",
                "    #: Every field's default.",
                "    DEFAULTS: ClassVar[dict[str, Any]]",
                f"    def __init__(self, *, {args}) -> None: ...",
                "    def replace(self, **changes: Any) -> Self:",
                '        """A copy with the given fields changed (validated again)."""',
            ]
        lines += [
            "    def to_dict(self) -> dict[str, Any]:",
            '        """Every field, under the same keys as the JSON output."""',
            "",
        ]
    lines += [
        '_C = TypeVar("_C")',
        '_I = TypeVar("_I")',
        '_R = TypeVar("_R")',
        "",
        "class _Run(Generic[_C, _I, _R]):",
        '    """What every background run has: built from its configuration (or its',
        "    keyword arguments), items as they come, the result at the end (the",
        '    protocol stated once; not a class at run time)."""',
        "",
        "    def __init__(self, config: _C | None = None, **kwargs: Any) -> None: ...",
        "    @property",
        "    def config(self) -> _C: ...",
        "    def next(self, timeout_s: float = 0.1) -> _I | None:",
        '        """The next item, waiting at most ``timeout_s``."""',
        "    def drain(self) -> list[_I]:",
        '        """Every item ready now, without waiting."""',
        "    def __iter__(self) -> Iterator[_I]: ...",
        "    def __next__(self) -> _I: ...",
        "    @property",
        "    def done(self) -> bool: ...",
        "    def request_stop(self) -> None: ...",
        "    def stop(self) -> _R:",
        '        """Ends the run; its result (the same object every time)."""',
        "    def wait(self, timeout_s: float | None = None) -> _R | None:",
        '        """Waits for the run to end by itself; None on timeout."""',
        "    def __enter__(self) -> Self: ...",
        "    def __exit__(",
        "        self,",
        "        et: type[BaseException] | None,",
        "        e: BaseException | None,",
        "        tb: TracebackType | None,",
        "    ) -> bool: ...",
        "",
    ]
    for name, cfg, item, result, extra in RUNS:
        lines += [
            "@final",
            f"class {name}(_Run[{cfg}, {item}, {result}]):",
            f'    """A background run of a :class:`{cfg}` (or of its keyword arguments)."""',
            "",
        ]
        lines += ["    " + x for x in extra] or ["    ..."]
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
