"""Small helpers for the Hydra command-line entry points."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

#: OmegaConf's error for a list merged onto a mapping (it cannot replace one by the other).
LIST_ONTO_MAPPING = "Cannot merge DictConfig with ListConfig"


def pop_flag(flag: str) -> bool:
    """Remove a ``--flag`` Hydra would reject from ``sys.argv``; tell whether it was there."""
    if flag in sys.argv[1:]:
        sys.argv = [a for a in sys.argv if a != flag]
        return True
    return False


_JSON_OUTPUT = False


def run_command(main: Callable[[], object]) -> None:
    """Run a Hydra command that also takes ``--json`` (Hydra itself would reject it)."""
    global _JSON_OUTPUT
    _JSON_OUTPUT = pop_flag("--json")
    main()
    sys.exit(0)


def json_output() -> bool:
    """Whether the command was asked for one JSON object on stdout instead of a table."""
    return _JSON_OUTPUT


def report(result: Mapping[str, Any], title: str, fmt: Callable[[Any], str] = str) -> None:
    """``result`` as one JSON object (``--json``) or as a two-column table for people."""
    if _JSON_OUTPUT:
        print(json.dumps(dict(result)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("item")
    table.add_column("value", justify="right")
    for k, v in result.items():
        table.add_row(k, fmt(v))
    Console().print(table)


def _parsed(arg: str):
    """``arg`` read by Hydra's override parser, or None for a flag or a flag's value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides([arg])[0]
    except OverrideParseException:
        return None


def replace_list_overrides(argv: Sequence[str], keys: Iterable[str]) -> list[str]:
    """``argv`` with each assignment of a list to one of ``keys`` as ``~KEY +KEY=[...]``.

    Hydra merges an override's value into the composed one, OmegaConf cannot merge a list
    onto a mapping, and Hydra has no hook between reading the command line and composing;
    deleting the key and adding it again is Hydra's own spelling of replacing it. Each
    argument is read with Hydra's override parser, so only a list assigned to one of
    ``keys`` is respelled (not a sweep, not a flag); everything else passes through.
    """
    keys = set(keys)
    out: list[str] = []
    for arg in argv:
        override = _parsed(arg)
        if (
            override is not None
            and override.key_or_group in keys
            and not (override.is_delete() or override.is_add())  # KEY= or ++KEY=
            and isinstance(override.value(), list)
        ):
            key = override.key_or_group
            out += [f"~{key}", f"+{key}={arg.split('=', 1)[1]}"]
        else:
            out.append(arg)
    return out


def fails_on_list_onto_mapping(config_name: str, argv: Sequence[str], remedy: str) -> bool:
    """Whether composing ``config_name`` with the overrides in ``argv`` fails on a list
    merged onto a mapping and succeeds with the override ``remedy`` added: what a command's
    error hint should explain. Best effort (it re-composes after a failure); any other
    problem gives False.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from crystalrl.config import CONFIG_DIR

    overrides = [arg for arg in argv if _parsed(arg) is not None]

    def error(extra: list[str]) -> BaseException | None:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                compose(config_name, overrides=[*overrides, *extra])
        except Exception as exc:
            return exc
        finally:
            GlobalHydra.instance().clear()
        return None

    first = error([])
    chain = []
    while first is not None:
        chain.append(str(first))
        first = first.__cause__ or first.__context__
    return any(LIST_ONTO_MAPPING in m for m in chain) and error([remedy]) is None
