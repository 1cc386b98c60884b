"""A self-consistent convex hull: reference energies from the same potential as the queries.

Built once with pymatgen's :class:`PatchedPhaseDiagram` (fast for tens of thousands of
entries), then reduced to its stable entries, which are all a query ever needs: an entry
that is unstable in its own chemical space is unstable in every larger one.

A query's hull energy is a linear programme: the lowest energy per atom of a mix of the
stable entries inside its chemical system that has the query's composition (the lower
convex hull at that point, what ``PhaseDiagram.get_hull_energy_per_atom`` gives). The
queries of a batch are independent blocks of one programme, solved in one HiGHS call:
about ten times faster than building a phase diagram for every chemical system a batch
of generated crystals brings (most are new), with the same answer to 1e-12 eV/atom. This
also answers chemical systems no reference compound spans (a new ternary of known
elements), which a ``PatchedPhaseDiagram`` refuses.

Elemental references. A phase diagram needs an entry for every element it contains. An
element that occurs in reference compounds but has no pure-element reference structure
(MP-20 as recovered has none for Al, V, Os and Pt) gets one from the potential itself:
fcc, bcc, hcp, simple cubic and diamond prototypes are relaxed (cell and positions) and
the lowest energy per atom is used. The alternatives are worse: dropping every compound of
such an element loses thousands of reference structures, and a made-up energy shifts every
formation energy in those systems. An element the reference never contains cannot be
placed on the hull at all; a query containing it has no E_hull (NaN, counted as failed).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from crystalrl.potentials import EnergyModel
from crystalrl.reference.formation import (
    MAX_LABEL_RESIDUAL,
    fit_chemical_potentials,
    formation_energies,
)
from crystalrl.reference.prototypes import prototype_energy

log = logging.getLogger("crystalrl")

#: 4: support counts and the DFT-anchored kind.
HULL_VERSION = 4
#: Build options (and their defaults) of a reference's hull; part of the cache key. ``kind``:
#: ``dft`` anchors the hull on the reference's DFT formation energies (see
#: :meth:`ReferenceHull.build_dft_anchored`); ``hybrid`` does too, but holds each reference
#: compound at the lower of its DFT and its potential formation energy, so that no known
#: compound lies below the hull; ``potential`` builds it from the potential's own energies
#: of the reference (self-consistent). ``benchmarks/hull_accuracy.py`` chose
#: the default against DFT.
HULL_DEFAULTS = {"kind": "hybrid", "relax_steps": 300, "fmax": 0.05}
HULL_KINDS = ("dft", "hybrid", "potential")
#: Fewest reference compounds in a chemical system (subsystems included) for its E_hull
#: to count as supported; chosen on left-out crystals with ``benchmarks/hull_accuracy.py``.
MIN_HULL_SUPPORT = 12
#: The kinds anchored on the reference's DFT formation energies (no elemental prototypes).
ANCHORED_KINDS = ("dft", "hybrid")


class ReferenceHull:
    """Stable reference entries and E_hull queries against them.

    ``support`` counts the reference compounds (two or more elements, with an energy) of
    every element set: a query's support is the number of them inside its chemical system
    (its subsystems included). A hull with little support in a system cannot tell a new
    stable compound from a known one it lacks: MP-20 as recovered holds no Cs-Cl compound,
    so CsCl itself lands 2 eV/atom below its hull of two elements.

    ``chemical_potentials`` (eV/atom per element) are set on a DFT-anchored hull, whose
    entries are formation energies: a query's potential energy becomes a formation energy
    by subtracting them before it is placed on the hull.
    """

    def __init__(
        self,
        stable_entries: list,
        elemental: dict[str, tuple[float, str]],
        support: dict[frozenset, int] | None = None,
        chemical_potentials: dict[str, float] | None = None,
    ):
        self.stable_entries = stable_entries
        #: element symbol -> (energy per atom, "reference", "dft" or the prototype used)
        self.elemental = elemental
        self.elements = frozenset(elemental)
        self.support = dict(support or {})
        self.chemical_potentials = chemical_potentials
        by_space: dict[frozenset, list] = defaultdict(list)
        for entry in stable_entries:
            by_space[frozenset(str(e) for e in entry.composition.elements)].append(entry)
        self._by_space = dict(by_space)
        self._systems: OrderedDict = OrderedDict()

    def __getstate__(self):
        return {
            "stable_entries": self.stable_entries,
            "elemental": self.elemental,
            "support": self.support,
            "chemical_potentials": self.chemical_potentials,
        }

    def __setstate__(self, state):
        self.__init__(
            state["stable_entries"],
            state["elemental"],
            state.get("support"),
            state.get("chemical_potentials"),
        )

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        element_counts: Sequence[dict[str, int]],
        energies_per_atom: np.ndarray,
        energy_model: EnergyModel | None = None,
        relax_steps: int = 300,
        fmax: float = 0.05,
        progress: bool = False,
    ) -> ReferenceHull:
        """Hull of reference cells (element counts) with energies per atom (NaN = skipped)."""
        from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram, PDEntry
        from pymatgen.core import Composition

        entries = []
        for i, (counts, e) in enumerate(zip(element_counts, energies_per_atom, strict=True)):
            if np.isfinite(e):
                comp = Composition(counts)
                entries.append(PDEntry(comp, float(e) * comp.num_atoms, name=f"ref-{i}"))
        elemental: dict[str, tuple[float, str]] = {}
        for entry in entries:
            if entry.composition.is_element:
                symbol = str(entry.composition.elements[0])
                if symbol not in elemental or entry.energy_per_atom < elemental[symbol][0]:
                    elemental[symbol] = (entry.energy_per_atom, "reference")
        present = sorted({str(el) for entry in entries for el in entry.composition.elements})
        missing = [s for s in present if s not in elemental]
        if missing and energy_model is not None:
            log.info("relaxing elemental prototypes for %s", ", ".join(missing))
            for symbol in missing:
                e, name = prototype_energy(symbol, energy_model, relax_steps, fmax)
                if np.isfinite(e):
                    elemental[symbol] = (e, name)
                    entries.append(PDEntry(Composition(symbol), e, name=f"prototype-{name}"))
        unplaceable = set(present) - set(elemental)
        if unplaceable:
            log.warning(
                "no elemental reference for %s: compounds containing them are left out",
                ", ".join(sorted(unplaceable)),
            )
            entries = [
                x for x in entries if not {str(el) for el in x.composition.elements} & unplaceable
            ]
        support: Counter = Counter()
        for x in entries:
            if len(x.composition.elements) > 1:
                support[frozenset(str(el) for el in x.composition.elements)] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ppd = PatchedPhaseDiagram(entries, verbose=progress)
        stable = sorted(ppd.stable_entries, key=lambda x: x.name)
        return cls(list(stable), elemental, dict(support))

    @classmethod
    def build_dft_anchored(
        cls,
        element_counts: Sequence[dict[str, int]],
        energies_per_atom: np.ndarray,
        dft_formation: np.ndarray,
        progress: bool = False,
        lower_envelope: bool = False,
    ) -> ReferenceHull:
        """A hull of DFT formation energies, with the potential placing the rest.

        The potential's energies are turned into formation energies with per-element
        chemical potentials fitted (least squares) on the reference rows that carry both.
        Fitting, rather than taking the potential's elemental crystals, absorbs the
        potential's offsets from DFT (CHGNet learned MP2020-corrected energies, the
        elemental references carry no correction). Every row with a DFT label enters
        the hull with it; a row without one (MP-20's unlabelled train rows) enters with
        the potential's formation energy; each element sits at zero. ``lower_envelope``
        holds every row at the lower of the two: a reference compound scored with the
        potential is then never below the hull, where the potential overbinds it.
        """
        from pymatgen.core import Composition

        energies = np.asarray(energies_per_atom, dtype=np.float64)
        labels = np.asarray(dft_formation, dtype=np.float64)
        mu = fit_chemical_potentials(element_counts, energies, labels)
        predicted = formation_energies(element_counts, energies, mu)
        trusted = np.isfinite(labels) & (np.abs(labels - predicted) <= MAX_LABEL_RESIDUAL)
        formation = np.where(trusted, labels, predicted)
        if lower_envelope:
            formation = np.fmin(formation, predicted)
        counts = list(element_counts) + [{el: 1} for el in sorted(mu)]
        formation = np.concatenate([formation, np.zeros(len(mu))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            present = {str(el) for c in element_counts for el in Composition(c).elements}
        if present - set(mu):
            log.warning(
                "no DFT label contains %s: compounds containing them are left out of the hull",
                ", ".join(sorted(present - set(mu))),
            )
        hull = cls.build(counts, formation, energy_model=None, progress=progress)
        hull.elemental = {el: (0.0, "dft") for el in hull.elemental}
        hull.chemical_potentials = {el: mu[el] for el in hull.elemental}
        return hull

    # ------------------------------------------------------------------ queries
    def _entries_within(self, space: frozenset) -> list:
        """The stable entries whose elements all lie in ``space``."""
        if 2 ** len(space) > len(self._by_space):  # very many elements: scanning is cheaper
            return [e for s, group in self._by_space.items() if s <= space for e in group]
        elements = sorted(space)
        return [
            entry
            for r in range(1, len(elements) + 1)
            for sub in combinations(elements, r)
            for entry in self._by_space.get(frozenset(sub), ())
        ]

    def _system(self, space: frozenset) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """Elements, atomic fractions (elements × entries) and energies per atom of the
        stable entries inside a chemical system, memoised per system."""
        table = self._systems.get(space)
        if table is not None:
            self._systems.move_to_end(space)
            return table
        entries = self._entries_within(space)
        elements = tuple(sorted(space))
        fractions = np.array(
            [[e.composition.get_atomic_fraction(el) for e in entries] for el in elements]
        )
        table = elements, fractions, np.array([e.energy_per_atom for e in entries])
        self._systems[space] = table
        if len(self._systems) > 4096:
            self._systems.popitem(last=False)
        return table

    def support_many(self, compositions: Sequence) -> np.ndarray:
        """Reference compounds inside each query's chemical system (its subsystems
        included); 0 for a failed structure."""
        from pymatgen.core import Composition

        out = np.zeros(len(compositions), dtype=np.int64)
        memo: dict[frozenset, int] = {}
        for i, comp in enumerate(compositions):
            if comp is None:
                continue
            space = frozenset(str(el) for el in Composition(comp).elements)
            if space not in memo:
                elements = sorted(space)
                memo[space] = sum(
                    self.support.get(frozenset(sub), 0)
                    for r in range(2, len(elements) + 1)
                    for sub in combinations(elements, r)
                )
            out[i] = memo[space]
        return out

    def e_above_hull(self, composition, energy_per_atom: float) -> float:
        """E_hull (eV/atom, negative below the hull) of a composition at an energy per atom;
        NaN when the energy is NaN or an element has no reference."""
        return float(self.e_above_hull_many([composition], np.array([energy_per_atom]))[0])

    def e_above_hull_many(
        self, compositions: Sequence, energies_per_atom: np.ndarray
    ) -> np.ndarray:
        """:meth:`e_above_hull` of many queries, from one linear programme."""
        from pymatgen.core import Composition

        out = np.full(len(compositions), np.nan)
        rows, queries, blocks = [], [], []
        for i, (comp, e) in enumerate(zip(compositions, energies_per_atom, strict=True)):
            if comp is None or not np.isfinite(e):
                continue
            comp = Composition(comp)
            space = frozenset(str(el) for el in comp.elements)
            if not space or not space <= self.elements:
                continue
            elements, fractions, energies = self._system(space)
            target = np.array([comp.get_atomic_fraction(el) for el in elements])
            rows.append(i)
            if self.chemical_potentials is not None:  # potential energy -> formation energy
                mu = self.chemical_potentials
                e = e - float(target @ np.array([mu[el] for el in elements]))
            queries.append(e)
            blocks.append((fractions, energies, target))
        if rows:
            out[rows] = np.asarray(queries) - hull_energies(blocks)
        return out

    def missing_elements(self, compositions: Sequence) -> list[str]:
        """Elements of the queries that no reference entry contains (their E_hull is NaN)."""
        from pymatgen.core import Composition

        found = {str(el) for c in compositions if c is not None for el in Composition(c).elements}
        return sorted(found - self.elements)


def hull_energies(blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """The lowest energy per atom of a non-negative mix of entries with the target
    composition, for each ``(fractions, energies, target)`` block, as one block-diagonal
    linear programme (HiGHS). A block that cannot be solved gets NaN."""
    from scipy.optimize import linprog
    from scipy.sparse import block_diag

    sizes = [len(energies) for _, energies, _ in blocks]
    res = linprog(
        np.concatenate([energies for _, energies, _ in blocks]),
        A_eq=block_diag([fractions for fractions, _, _ in blocks], format="csr"),
        b_eq=np.concatenate([target for _, _, target in blocks]),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        # every block is feasible (the elements are entries) and bounded, so only a
        # numerical failure lands here: solve the blocks one by one, NaN where one fails
        return np.array([hull_energies([b])[0] if len(blocks) > 1 else math.nan for b in blocks])
    bounds = np.cumsum([0, *sizes])
    weights = [res.x[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return np.array([w @ energies for w, (_, energies, _) in zip(weights, blocks, strict=True)])


def hull_options(given: dict) -> tuple[str, dict]:
    """The hull's kind and its build options from a user's ``hull`` settings (defaults
    filled in); an unknown option or kind is an error naming it."""
    from crystalrl.reference.datasets import ReferenceDatasetError

    unknown = set(given) - set(HULL_DEFAULTS)
    if unknown:
        raise ReferenceDatasetError(
            f"unknown hull option(s) {sorted(unknown)}; known: {sorted(HULL_DEFAULTS)}"
        )
    options = {**HULL_DEFAULTS, **given}
    kind = options.pop("kind")
    if kind not in HULL_KINDS:
        raise ReferenceDatasetError(f"hull.kind={kind!r}: expected one of {', '.join(HULL_KINDS)}")
    if kind in ANCHORED_KINDS:
        options = {}  # no prototypes: each element sits at zero formation energy
    return kind, options


def build_hull(
    kind: str,
    element_counts: Sequence[dict[str, int]],
    energies_per_atom: np.ndarray,
    dft_formation: np.ndarray | None = None,
    energy_model: EnergyModel | None = None,
    progress: bool = False,
    **options,
) -> ReferenceHull:
    """The hull of ``kind`` (one of :data:`HULL_KINDS`): anchored on ``dft_formation``, or
    the potential's own with ``options`` (``relax_steps``, ``fmax``) for its prototypes."""
    if kind in ANCHORED_KINDS:
        return ReferenceHull.build_dft_anchored(
            element_counts,
            energies_per_atom,
            dft_formation,
            progress=progress,
            lower_envelope=kind == "hybrid",
        )
    return ReferenceHull.build(
        element_counts, energies_per_atom, energy_model, progress=progress, **options
    )
