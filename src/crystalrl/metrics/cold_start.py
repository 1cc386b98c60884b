"""One line before the reference parts are first built, so a long first run says why.

The first ``evaluate`` (or reward) on an empty cache parses and de-duplicates the
reference, reduces its cells for StructureMatcher, fills its energies, builds the hull and
the VAE features: minutes without a word, after which every run reads them back in
seconds. Whether a part is cached is judged by the names of the cache files (reference
name and kind); a cache left from other dataset contents may pass for one, which only
costs the line, never the result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

#: The cache kinds (``Reference.cache_file``) each part of the reference is stored under.
PART_CACHES = {
    "structures": ("index", "matcher-cells"),
    "energy_model": ("energies",),
    "hull": ("hull",),
    "features": ("features",),
}
#: Each part as the line names it.
PART_NAMES = {
    "structures": "structures for novelty",
    "energy_model": "energies",
    "hull": "convex hull",
    "features": "VAE features",
}


def uncached_parts(reference: Any, parts: Iterable[str]) -> list[str]:
    """Those of ``parts`` with no cache file of this reference yet, in a fixed order."""
    stem = reference.cache_stem
    folder = reference.cache_dir
    wanted = set(parts)
    return [
        part
        for part, kinds in PART_CACHES.items()
        if part in wanted and not all(any(folder.glob(f"{stem}-{kind}-*")) for kind in kinds)
    ]


def announce_uncached(reference: Any, parts: Iterable[str], log: logging.Logger) -> None:
    """Log which parts are about to be built, roughly how long that takes, and that it is
    done once; nothing when every part is cached."""
    missing = uncached_parts(reference, parts)
    if not missing:
        return
    names = ", ".join(PART_NAMES[p] for p in missing)
    log.info(
        "building the %s reference's %s once (a few minutes on a CPU, about 5 for the "
        "default mp-20+mp-bandgap); cached in %s afterwards, so later runs start in seconds "
        "(python -m crystalrl.build_reference builds them ahead)",
        reference.name,
        names,
        reference.cache_dir,
    )
