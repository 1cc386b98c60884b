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


def replace_list_overrides(argv: Sequence[str], keys: Iterable[str]) -> list[str]:
    """``argv`` with each ``KEY=[...]`` for one of ``keys`` as ``~KEY +KEY=[...]``.

    Hydra merges an override onto the composed value, and OmegaConf cannot merge a list
    onto a mapping, so assigning a list to a key the configs write as a mapping fails.
    Deleting the key and adding it again gives the list the assignment meant.
    """
    keys = set(keys)
    out: list[str] = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        key = key.removeprefix("++")
        if eq and key in keys and value.lstrip().startswith("["):
            out += [f"~{key}", f"+{key}={value}"]
        else:
            out.append(arg)
    return out


def fails_on_list_onto_mapping(config_name: str, argv: Sequence[str], remedy: str) -> bool:
    """Whether composing ``config_name`` with ``argv`` fails on a list merged onto a mapping
    and succeeds with the override ``remedy`` added: what a command's error hint should
    explain. Best effort (it re-composes after a failure); any other problem gives False.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    from crystalrl.config import CONFIG_DIR

    try:
        args = get_args_parser().parse_args(list(argv))
    except SystemExit:
        return False

    def error(extra: list[str]) -> BaseException | None:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                compose(args.config_name or config_name, overrides=[*args.overrides, *extra])
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
