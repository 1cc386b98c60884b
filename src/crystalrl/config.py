"""Hydra/OmegaConf glue shared by every command: resolvers and config location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from crystalrl.checkpoint_registry import PROJECT_ROOT, resolve_checkpoint

#: The config tree lives at the repository root, beside ``checkpoints/``.
CONFIG_DIR = str(PROJECT_ROOT / "configs")


def hub_resolver(name: str, _node_: Any = None) -> str:
    """``${hub:NAME}``: :func:`crystalrl.checkpoint_registry.resolve_checkpoint` told the
    key being resolved, because Hydra resolves a node's copy while instantiating it and its
    error would otherwise name only the value."""
    key = None
    if _node_ is not None:
        try:
            key = _node_._get_full_key(None) or None
        except AttributeError:  # a node type without keys: the value alone
            key = None
    return resolve_checkpoint(name, key=key)


def register_resolvers() -> None:
    """``${hub:NAME}`` resolves a checkpoint name; idempotent so every entry point can call it."""
    if not OmegaConf.has_resolver("hub"):
        OmegaConf.register_new_resolver("hub", hub_resolver)


register_resolvers()

__all__ = ["CONFIG_DIR", "register_resolvers", "Path"]
