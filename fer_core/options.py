"""Settings dataclasses as command-line options: one source of truth for a setting's default,
help text and flag.

A field declared with `setting(default, help)` becomes an option `--field-name` (or its own
`flag`) of the right type; `flag_values` reads back the ones the user gave.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, field, fields
from typing import Any


def setting(default: Any, help: str, flag: str | None = None, choices=None) -> Any:
    """A dataclass field with its command-line help; `flag` names the option when it is not the
    field's name with dashes, `choices` limits its values."""
    meta: dict[str, Any] = {"help": help}
    if flag:
        meta["flag"] = flag
    if choices:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


def _flag(f: Field, prefix: str) -> str:
    return f.metadata.get("flag") or "--" + prefix + f.name.replace("_", "-")


def add_flags(
    parser: argparse._ActionsContainer, cls: type, prefix: str = "", keep_defaults: bool = True
) -> None:
    """One option per field of `cls` that has help. With keep_defaults the option defaults to the
    field's default; without, to None ("not given": a recipe's value stays)."""
    for f in fields(cls):
        if "help" not in f.metadata or f.default is MISSING:
            continue
        default = f.default
        text = f.metadata["help"] + (f" (default {default})" if keep_defaults else "")
        kwargs: dict[str, Any] = {
            "dest": prefix.replace("-", "_") + f.name,
            "default": default if keep_defaults else None,
            "help": text.replace("%", "%%"),
        }
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(nargs=len(default), type=type(default[0]), metavar=("LOW", "HIGH"))
        else:
            kwargs["type"] = type(default)
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(_flag(f, prefix), **kwargs)


def flag_values(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of `cls` given on the command line (options left at None are omitted)."""
    values = {}
    for f in fields(cls):
        value = getattr(args, prefix.replace("-", "_") + f.name, None)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return values
