"""The function behind a :class:`~crystalrl.rewards.components.CustomReward`, from what a
config can write.

A config can only name things by dotted path. A path that named a class used to be taken
as the function itself, so each batch built an instance from the structures and the run
failed later with "must be real number, not DensityAbove", naming neither the key nor the
fix. A class named by path is therefore instantiated here, without arguments, and every
form that cannot work is refused before any work with the key and the accepted forms.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from crystalrl.checks import SettingError

#: The forms ``fn`` accepts, quoted by every error about it.
ACCEPTED = (
    "expected a function of a list of structures returning one number each, its dotted "
    "path (my_rewards.small_cells), the dotted path of a class whose instances are such "
    "functions and that takes no arguments (my_rewards.DensityAbove), or, for a class that "
    "takes arguments, a node {_target_: my_rewards.DensityAbove, threshold: 0.05}"
)


def component_key(name: str) -> str:
    """The config key of a custom component's ``fn``, as errors quote it."""
    return f"rl_module.reward_fn.components.{name}.fn"


def locate(path: str) -> Any:
    """The object at dotted ``path``: the longest importable module, then attributes.

    A module that exists but fails to import (a missing dependency of the user's file)
    is an error of its own, not "no such module"."""
    parts = path.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise ImportError(f"{path!r} is not a dotted path (module.name)")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name + ".").startswith(exc.name + "."):
                continue  # this prefix is not a module: try a shorter one
            raise
        for end in range(cut, len(parts)):
            if not hasattr(obj, parts[end]):
                raise ImportError(f"{'.'.join(parts[:end])!r} has no attribute {parts[end]!r}")
            obj = getattr(obj, parts[end])
        return obj
    raise ImportError(f"no module {parts[0]!r} (is its folder on PYTHONPATH?)")


def resolve_reward_function(fn: Any, key: str) -> Callable:
    """The callable that ``fn`` names; ``None`` is the shipped atomic density.

    ``key`` is the config key ``fn`` came from; each error names it."""
    if fn is None:
        from crystalrl.rewards.functions import atomic_density

        return atomic_density
    if isinstance(fn, Mapping) and fn.get("_target_"):
        from hydra.utils import instantiate

        fn = instantiate(fn)
    elif isinstance(fn, str):
        try:
            fn = locate(fn)
        except Exception as exc:  # the user's module may fail in any way while importing
            raise SettingError(f"{key}={fn!r} cannot be imported ({exc}); {ACCEPTED}") from exc
    if isinstance(fn, type):
        try:
            fn = fn()
        except TypeError as exc:
            raise SettingError(
                f"{key}: class {fn.__module__}.{fn.__qualname__} cannot be built without "
                f"arguments ({exc}); give it as a node {{_target_: "
                f"{fn.__module__}.{fn.__qualname__}, ARG: VALUE}}"
            ) from exc
    if not callable(fn):
        raise SettingError(f"{key}={fn!r} is not callable; {ACCEPTED}")
    return fn
