"""Config values that several commands read, read one way: an optional key, the potential
node and the VAE of the feature metrics.

Each command used to read these itself or from another command; one reading means that
``evaluate``, ``relax`` and ``build_reference`` agree on what a config asks for.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("crystalrl")


def optional(cfg: DictConfig, key: str) -> Any:
    """A config value, or ``None`` when it is missing or its interpolation fails (the
    default ``${hub:mp_20_vae}`` of an installation without the shipped checkpoints)."""
    from omegaconf.errors import InterpolationResolutionError

    try:
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except InterpolationResolutionError as exc:
        log.warning("%s does not resolve (%s)", key, exc)
        return None


def potential_spec(cfg: DictConfig) -> dict | None:
    """The ``potential`` node as a plain mapping for :func:`crystalrl.potentials.make_energy_model`.

    ``None`` (CHGNet) when the group was dropped (``~potential``) without a replacement. A
    plain mapping, not an instantiated model, so that equal configs share one cached
    reference in the process and one energy cache on disk.
    """
    node = OmegaConf.select(cfg, "potential")
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def potential_file(name: str, key: str = "relax_with") -> dict:
    """The config of ``configs/potential/NAME.yaml`` as a plain mapping, for an option that
    names a second potential beside the ``potential`` group (``relax_with=chgnet``)."""
    from crystalrl.config import CONFIG_DIR

    folder = Path(CONFIG_DIR) / "potential"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ValueError(f"{key}={name!r}: no {path.name} in configs/potential ({known})")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def load_vae_or_none(path: str | None, key: str = "vae_ckpt_path") -> Any:
    """The VAE of the feature metrics, or ``None`` when none is configured (``key=null``).

    A configured VAE that does not load is an error, not a warning: metrics silently
    skipped because of a typo in a path look like a finished evaluation.
    """
    if not path:
        return None
    from crystalrl.checkpoint_registry import ChecksumMismatchError, UnreadableCheckpointError
    from crystalrl.vae.module import load_vae

    try:
        return load_vae(str(path), key=key)
    # the checkpoint errors, which name key and path already; kept as their own types
    except (FileNotFoundError, ChecksumMismatchError, UnreadableCheckpointError) as exc:
        raise type(exc)(f"{exc} (or {key}=null to skip the metrics that need a VAE)") from exc
