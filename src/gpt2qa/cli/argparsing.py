"""The argparse layer under every `gpt2qa` command, apart from the flags themselves (`flags`).

`Parser` and `HelpFormatter`: no abbreviated flags, a "did you mean" for a mistyped one, and
every flag's default in --help. `add_settings_flags` turns a settings class (a frozen
dataclass, nested records included, or a pydantic model) into one flag per field, its
docstring as the help (code markup dropped) and its default shown ("not set" for None);
`add_refused_flags` adds hidden flags that refuse themselves in one line (`RefusedFlag`).
Nothing here names a command or a setting, so `flags` declares them all with these tools.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import difflib
import functools
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from gpt2qa.nesting import flat_fields


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, or says it is required (README: `--help`
    lists each default)."""

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        text = action.help or ""
        return not (not action.option_strings or action.required
                    or action.default is argparse.SUPPRESS
                    or "(default" in text or "%(default)" in text)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required and action.option_strings:
            return f"{action.help or ''} (required)".lstrip()
        if not self._shows_default(action):
            return action.help
        default = "not set" if action.default is None else "%(default)s"
        return f"{action.help or ''} (default: {default})".lstrip()

    def _format_action(self, action: argparse.Action) -> str:
        if not (action.help or "").strip() and self._shows_default(action):
            default = "not set" if action.default is None else "%(default)s"
            action = copy.copy(action)  # argparse prints nothing for a flag without help
            action.help = f"(default: {default})"
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    """gpt2qa's parsers: no abbreviated flags (`--step` must not run as `--steps`), the
    defaults in --help, and a "did you mean" for a mistyped flag. Sub-parsers made by
    `add_subparsers` are of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def refuse_unknown(self, extras: Sequence[str]) -> typing.NoReturn:
        """Exit 2 with this parser's usage, naming the unknown flags and the closest ones."""

        known = [o for a in self._actions if a.help is not argparse.SUPPRESS
                 for o in a.option_strings if o.startswith("--")]  # not a hidden, refused one
        hints = []
        for extra in extras:
            flag = extra.split("=", 1)[0]
            if flag.startswith("-"):
                close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{flag} -> did you mean {close[0]}?")
        message = f"unrecognized arguments: {' '.join(extras)}"
        self.error(message + (f" ({'; '.join(hints)})" if hints else ""))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_type(tp: Any) -> tuple[Callable[[str], Any] | None, tuple[str, ...] | None]:
    """argparse type and choices for a dataclass field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _field_type(args[0])
    if origin is typing.Literal:
        return str, tuple(str(a) for a in typing.get_args(tp))
    if tp in (int, float, str):
        return tp, None
    return None, None


def field_docs(cls: type) -> dict[str, str]:
    '''The string literal under each field of a dataclass (its attribute docstring), by name:

        max_steps: int = 0
        """Optimizer steps; 0 means run for epochs."""   ->  {"max_steps": "Optimizer ..."}
    '''
    return dict(_field_docs(cls))


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    """`field_docs`, read once per class: parsing a class's source costs milliseconds, and
    each settings flag asks for its docstring."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for stmt, after in zip(body, body[1:], strict=False):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def settings_fields(cls: type) -> list[tuple[str, Any, Any, str]]:
    """(name, type, default, docstring) of each setting of a settings dataclass, nested records
    included under their flat names (`nesting.flat_fields`), or of a pydantic model."""
    if dataclasses.is_dataclass(cls):
        out = []
        for name, path in flat_fields(cls).items():
            owner = cls
            for part in path[:-1]:
                owner = {f.name: f for f in dataclasses.fields(owner)}[part].metadata["nested"]
            f = {f.name: f for f in dataclasses.fields(owner)}[path[-1]]
            out.append((name, typing.get_type_hints(owner)[f.name], f.default,
                        field_docs(owner).get(f.name, "")))
        return out
    return [(name, info.annotation, info.default, " ".join((info.description or "").split()))
            for name, info in cls.model_fields.items()]  # type: ignore[attr-defined]


def shown_default(value: Any) -> str:
    """A default as --help shows it: None is "not set" and an empty string "empty", so that
    no help says "None" or ends in "(default: )"."""
    if value is None:
        return "not set"
    return "empty" if value == "" else str(value)


def plain_help(text: str) -> str:
    """Docstring text as --help text: code markup (`name`, ``name``) dropped, and % escaped
    for argparse."""
    return re.sub(r"`+([^`]*)`+", r"\1", text).replace("%", "%%")


def add_settings_flags(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = (),
                       shown_defaults: dict[str, Any] | None = None,
                       docs: dict[str, str] | None = None) -> None:
    """One flag per field of a settings class, defaulting to 'not given' (None); the help text
    is `docs` or the field's docstring, and the default it shows is `shown_defaults` or the
    field's."""
    for name, tp, field_default, doc in settings_fields(cls):
        if name in skip:
            continue
        doc = plain_help((docs or {}).get(name, doc))
        default = shown_default((shown_defaults or {}).get(name, field_default))
        help_text = f"{doc} (default: {default})" if doc else f"(default: {default})"
        if tp is bool:
            parser.add_argument(_flag(name), action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
            continue
        conv, choices = _field_type(tp)
        parser.add_argument(_flag(name), type=conv, choices=choices, default=None,
                            metavar=None if choices else name.upper(), help=help_text)


class RefusedFlag(argparse.Action):
    """A flag a command does not take, hidden from its --help: given, it is noted under
    `refused` with the one line that says why, and the command stops on that line."""

    def __init__(self, option_strings: Sequence[str], dest: str, reason: str = "",
                 **kwargs: Any) -> None:
        super().__init__(option_strings, "refused", nargs="?", default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS)
        self.reason = reason

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        noted = list(getattr(namespace, "refused", []))
        namespace.refused = [*noted, f"{option_string}: {self.reason}"]


def add_refused_flags(parser: argparse.ArgumentParser, cls: type,
                      reasons: dict[str, str]) -> None:
    """Hidden flags for the fields of `cls` named in `reasons` (both spellings of a yes/no
    flag) that refuse themselves in one line (`RefusedFlag`)."""
    for name, tp, _, _ in settings_fields(cls):
        if name in reasons:
            spellings = [_flag(name)] + ([f"--no-{_flag(name)[2:]}"] if tp is bool else [])
            parser.add_argument(*spellings, action=RefusedFlag, reason=reasons[name])
