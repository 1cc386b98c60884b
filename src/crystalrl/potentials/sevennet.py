"""SevenNet as an energy model: the independent judge beside CHGNet.

A policy rewarded by CHGNet can learn CHGNet's errors; a second potential trained
differently (SevenNet-0: an equivariant network on MPtrj, weights in the ``sevenn`` wheel)
judges its samples without that bias. Structures are batched the way SevenNet trains:
one graph per structure, collated into one disjoint graph per forward pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crystalrl.potentials.energy_model import POTENTIAL_ERRORS, EnergyModel, loading_weights


class SevenNetEnergy(EnergyModel):
    """SevenNet single points and forces, many structures per forward pass.

    ``model_name`` is a pretrained SevenNet (``7net-0``, ``7net-l3i5``, ...; the ones that
    ship in the wheel work offline). ``modal`` picks the fidelity of a multi-fidelity model.
    """

    def __init__(
        self,
        model_name: str = "7net-0",
        modal: str | None = None,
        batch_size: int = 32,
        num_threads: int | None = None,
        device: str = "cpu",
    ):
        self.model_name = model_name
        self.modal = modal
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.device = device
        self.key = f"sevennet-{model_name}" + (f"-{modal}" if modal else "")
        self._model = None
        self._energy_only = None
        self._cutoff = 0.0
        self._known: set[int] = set()

    def _load(self):
        import sevenn.util
        from sevenn import _keys

        with warnings.catch_warnings(), loading_weights():
            warnings.simplefilter("ignore")
            checkpoint = sevenn.util.load_checkpoint(self.model_name)
            models = [checkpoint.build_model() for _ in range(2)]
            for model in models:
                model.set_is_batch_data(True)
                if self.modal:
                    model.prepare_modal_deploy(self.modal)
                model.to(self.device)
                model.eval()
        # energies need no forces: without the autograd pass a single point is ~3x cheaper
        models[1].delete_module_by_key("force_output")
        self._cutoff = float(checkpoint.config[_keys.CUTOFF])
        self._known = set(checkpoint.config[_keys.TYPE_MAP])
        self._model, self._energy_only = models

    @property
    def model(self):
        if self._model is None:
            self._load()
        return self._model

    def _graph(self, atoms):
        """SevenNet's graph of one ASE ``Atoms``, or None for a structure it cannot take
        (an element outside its type map, a broken cell)."""
        from sevenn import _keys
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        self.model  # noqa: B018 (loads cutoff and type map)
        if not set(atoms.get_atomic_numbers().tolist()) <= self._known:
            return None
        try:
            data = AtomGraphData.from_numpy_dict(
                unlabeled_atoms_to_graph(atoms, self._cutoff, with_shift=False)
            )
        except POTENTIAL_ERRORS:
            return None
        if data[_keys.EDGE_IDX].shape[1] == 0:  # isolated atoms: no bonds, no energy
            return None
        if self.modal:
            data[_keys.DATA_MODALITY] = self.modal
        return data

    def _forward(self, model, graphs: list) -> dict:
        from torch_geometric.loader.dataloader import Collater

        batch = Collater([], follow_batch=None, exclude_keys=None)(graphs)
        return model(batch.to(self.device))

    def energies(
        self, structures: Sequence, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        import torch
        from pymatgen.io.ase import AseAtomsAdaptor

        self.model  # noqa: B018

        def per_atom(graphs: list, where: list[int]) -> list[float]:
            totals = self._energies(graphs)
            return [e / len(structures[i]) for e, i in zip(totals, where, strict=True)]

        with torch.no_grad():
            return self._batched_energies(
                structures, lambda s: self._graph(AseAtomsAdaptor.get_atoms(s)), per_atom, progress
            )

    def _energies(self, graphs: list) -> list[float]:
        """Total energies of the batch; when it fails, one structure at a time, so that
        only the bad one is NaN."""
        from sevenn import _keys

        if not graphs:
            return []
        try:
            energy = self._forward(self._energy_only, graphs)[_keys.PRED_TOTAL_ENERGY]
            return [float(e) for e in energy]
        except POTENTIAL_ERRORS:
            energies = []
            for g in graphs:
                try:
                    pred = self._forward(self._energy_only, [g])
                    energies.append(float(pred[_keys.PRED_TOTAL_ENERGY][0]))
                except POTENTIAL_ERRORS:
                    energies.append(float("nan"))
            return energies

    batched_forces = True

    def evaluate_batch(self, atoms_list: Sequence) -> list:
        """Energy (eV), forces (eV/Å) and stress (eV/Å³, ASE's Voigt order) of each
        ``Atoms`` from one forward and backward pass over the batch; ``None`` for a
        structure SevenNet cannot take."""
        from sevenn import _keys

        out: list = [None] * len(atoms_list)
        graphs, where = [], []
        for i, atoms in enumerate(atoms_list):
            graph = self._graph(atoms)
            if graph is not None:
                graphs.append(graph)
                where.append(i)
        if not graphs:
            return out
        with self._threads():
            try:
                groups = [(self._forward(self.model, graphs), where)]
            except POTENTIAL_ERRORS:
                groups = []
                for g, i in zip(graphs, where, strict=True):
                    try:
                        groups.append((self._forward(self.model, [g]), [i]))
                    except POTENTIAL_ERRORS:
                        continue
        for pred, idx in groups:
            energy = pred[_keys.PRED_TOTAL_ENERGY].detach().cpu().numpy()
            forces = pred[_keys.PRED_FORCE].detach().cpu().numpy()
            # SevenNet's stress is (xx, yy, zz, xy, yz, zx) with the opposite sign of ASE's
            stress = -pred[_keys.PRED_STRESS].detach().cpu().numpy()[:, [0, 1, 2, 4, 5, 3]]
            offset = 0
            for k, i in enumerate(idx):
                n = len(atoms_list[i])
                out[i] = (float(energy[k]), forces[offset : offset + n], stress[k])
                offset += n
        return out

    def ase_calculator(self) -> Any:
        from sevenn.calculator import SevenNetCalculator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SevenNetCalculator(self.model_name, device=self.device, modal=self.modal)
