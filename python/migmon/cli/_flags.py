"""A command's options for its configuration's fields, built from the
table the core declares beside those fields (``Config.FLAGS``): names,
metavar, help and what a flag takes come from there, its default from the
configuration's own (``Config.DEFAULTS``), its range and every rule between
fields from the configuration's checks, whose errors name the field (which
:func:`make_config` turns into the flag). Nothing here names a field."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer

from migmon.cli._common import SHOW_OPTIONS, Show
from migmon.errors import ConfigError
from migmon.output import timestamps

_C = TypeVar("_C")
_TYPES: dict[str, type] = {"text": str, "int": int, "float": float}
_KW = inspect.Parameter.KEYWORD_ONLY


@dataclass(frozen=True)
class Flag:
    """One field's flag, as the core declares it."""

    field: str
    names: str
    metavar: str
    takes: str
    help: str
    shown_default: str
    choices: tuple[str, ...]

    @property
    def positional(self) -> bool:
        return not self.names.startswith("-")

    @property
    def switch(self) -> bool:
        return self.takes in ("switch", "negated")

    @property
    def param(self) -> str:
        """The command's parameter: the long name (or the argument's
        metavar) as an identifier."""
        if self.positional:
            return self.names.lower()
        return self.names.split("/")[-1].lstrip("-").replace("-", "_")

    def value(self, given: Any) -> Any:
        """The field's value for what the command line gave."""
        if self.switch:
            return self.takes == "switch"
        return given


def flags_of(cls: Any) -> list[Flag]:
    """A configuration's flags, in the help's order."""
    return [Flag(**{**f, "choices": tuple(f["choices"])}) for f in cls.FLAGS]


def parameter(flag: Flag, default: Any) -> inspect.Parameter:
    """The typer parameter of one flag, with the configuration's default
    (a field whose default is None shows the table's words for it)."""
    names = flag.names.split("/")
    if flag.switch:
        info = typer.Option(*names, help=flag.help)
        return inspect.Parameter(flag.param, _KW, default=False, annotation=Annotated[bool, info])
    typ = _TYPES[flag.takes]
    shown: str | bool = flag.shown_default or default is not None
    if flag.positional:
        arg = typer.Argument(metavar=flag.names, help=flag.help, show_default=shown)
        if default == "":  # no default: required
            return inspect.Parameter(flag.param, _KW, annotation=Annotated[typ, arg])
        return inspect.Parameter(flag.param, _KW, default=default, annotation=Annotated[typ, arg])
    opt = typer.Option(*names, metavar=flag.metavar, help=flag.help, show_default=shown)
    annotation = Annotated[typ if default is not None else typ | None, opt]  # type: ignore[valid-type]
    return inspect.Parameter(flag.param, _KW, default=default, annotation=annotation)


@dataclass(frozen=True)
class Given:
    """The configuration flags given on the command line."""

    flags: dict[str, Flag]
    values: dict[str, Any]
    owners: dict[str, tuple[Any, ...]]

    def fields(self, cls: Any) -> dict[str, Any]:
        """``cls``'s fields set by the flags given."""
        return {
            f.field: f.value(self.values[p])
            for p, f in self.flags.items()
            if p in self.values and cls in self.owners[p]
        }

    def foreign(self, cls: Any) -> list[str]:
        """The flags given that ``cls`` has no field for."""
        return [
            f.names for p, f in self.flags.items() if p in self.values and cls not in self.owners[p]
        ]


def config_flags(
    *configs: Any, lead: tuple[str, ...] = ()
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Gives a command the flags of ``configs`` before its own parameters
    (but after those named in ``lead``) and the output options after them;
    it receives the flags given as its first argument, a :class:`Given`,
    and the output options as its second, a :class:`Show` (time stamps
    already switched on). A flag two configurations share (``vm``'s ``-p``)
    must be declared alike."""

    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        table: dict[str, Flag] = {}
        owners: dict[str, tuple[Any, ...]] = {}
        params: dict[str, inspect.Parameter] = {}
        defaults: dict[str, Any] = {}
        for cls in configs:
            for f in flags_of(cls):
                seen = table.get(f.param)
                if seen is not None and (seen.field, seen.names) != (f.field, f.names):
                    raise TypeError(f"{f.names} is declared differently by two configurations")
                default = cls.DEFAULTS[f.field]
                if seen is None:
                    table[f.param] = f
                    params[f.param] = parameter(f, default)
                    defaults[f.param] = default
                elif defaults[f.param] != default:
                    raise TypeError(f"{f.names} has two defaults")
                owners[f.param] = (*owners.get(f.param, ()), cls)
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[2:]
        shown = [
            inspect.Parameter(name, _KW, default=default, annotation=annotation)
            for name, (annotation, default) in SHOW_OPTIONS.items()
        ]

        def command(_ctx: typer.Context, **kw: Any) -> int:
            # Given: typed on the command line, not the default (exactly,
            # also when typed with the default's value).
            given = {p: v for p, v in ((p, kw.pop(p)) for p in table) if _typed(_ctx, p)}
            show = Show(**{name: kw.pop(name) for name in SHOW_OPTIONS})
            with timestamps(show.timestamps):
                return fn(Given(table, given, owners), show, **kw)

        ctx = inspect.Parameter("_ctx", _KW, annotation=typer.Context)
        first = [p.replace(kind=_KW) for p in own if p.name in lead]
        rest = [p.replace(kind=_KW) for p in own if p.name not in lead]
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [ctx, *first, *params.values(), *rest, *shown]
        )
        command.__name__ = fn.__name__
        command.__qualname__ = fn.__qualname__
        command.__doc__ = fn.__doc__
        command.__module__ = fn.__module__
        return command

    return deco


def _typed(ctx: typer.Context, param: str) -> bool:
    source = ctx.get_parameter_source(param)
    return source is not None and source.name != "DEFAULT"


def make_config(cls: Callable[..., _C], given: Given, **values: Any) -> _C:
    """A configuration from the flags given (and ``values`` the command
    derived itself); an error names the flag rather than the field."""
    try:
        return cls(**given.fields(cls), **values)
    except ConfigError as e:
        names = {f.field: f.names for f in flags_of(cls)}
        if e.field in names:
            raise ConfigError(f"{names[e.field]}: {e.reason}") from None
        raise


def flag_of(cls: Any, field: str) -> str:
    """The flag that sets ``cls``'s ``field`` (the field's name if none)."""
    return next((f.names for f in flags_of(cls) if f.field == field), field)
