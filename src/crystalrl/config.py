"""Hydra/OmegaConf glue shared by every command: resolvers and config location."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from crystalrl.hub import PROJECT_ROOT, resolve

#: The config tree lives at the repository root, beside ``checkpoints/``.
CONFIG_DIR = str(PROJECT_ROOT / "configs")


def register_resolvers() -> None:
    """``${hub:NAME}`` resolves a checkpoint name; idempotent so every entry point can call it."""
    if not OmegaConf.has_resolver("hub"):
        OmegaConf.register_new_resolver("hub", resolve)


register_resolvers()

__all__ = ["CONFIG_DIR", "register_resolvers", "Path"]
