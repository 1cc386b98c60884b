"""CHGNet as an energy model: batched single points, and forces and stress for relaxation."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crystalrl.potentials.energy_model import POTENTIAL_ERRORS, EnergyModel, loading_weights


class CHGNetEnergy(EnergyModel):
    """CHGNet (weights ship with the pip package), batched graph prediction.

    Graphs are built one structure at a time so that a structure CHGNet rejects costs only
    itself; the rest are predicted in batches of ``batch_size``. ``num_threads`` sets
    torch's intra-op threads while predicting and restores them afterwards.
    """

    def __init__(
        self,
        model_name: str = "0.3.0",
        batch_size: int = 64,
        num_threads: int | None = None,
        device: str = "cpu",
    ):
        self.model_name = model_name
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.device = device
        self.key = f"chgnet-{model_name}"
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from chgnet.model import CHGNet

            with (
                contextlib.redirect_stdout(io.StringIO()),
                warnings.catch_warnings(),
                loading_weights(),
            ):
                warnings.simplefilter("ignore")
                self._model = CHGNet.load(
                    model_name=self.model_name, use_device=self.device, verbose=False
                )
            self._model.eval()
        return self._model

    def energies(
        self, structures: Sequence, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        return self._batched_energies(
            structures, self._graph, lambda graphs, _: self._predict(graphs), progress
        )

    batched_forces = True

    def evaluate_batch(self, atoms_list: Sequence) -> list:
        """One batched CHGNet pass over all graphs, in the units ``CHGNetCalculator``
        gives ASE (energy in eV, stress GPa -> eV/Å³); when the batch fails, one pass per
        graph, so that only the bad one fails."""
        from ase.units import GPa
        from pymatgen.core import Structure

        out: list = [None] * len(atoms_list)
        graphs, where = [], []
        for i, atoms in enumerate(atoms_list):
            # the bare constructor: AseAtomsAdaptor also carries tags, charges and
            # calculator results, which cost a relaxation more than the graph needs
            structure = Structure(
                atoms.cell.array, atoms.numbers, atoms.positions, coords_are_cartesian=True
            )
            graph = self._graph(structure)
            if graph is not None:
                graphs.append(graph)
                where.append(i)
        if not graphs:
            return out
        with self._threads():
            try:
                preds = self._efs(graphs)
            except POTENTIAL_ERRORS:
                preds = []
                for g in graphs:
                    try:
                        preds.extend(self._efs([g]))
                    except POTENTIAL_ERRORS as exc:
                        preds.append(exc)
        for i, p in zip(where, preds, strict=True):
            out[i] = p if isinstance(p, Exception) else (p[0], p[1], p[2] * GPa)
        return out

    def _efs(self, graphs: list) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Energy (eV), forces and stress (GPa) of each graph from ONE backward pass.

        ``CHGNet.forward(task="efs")`` takes two (forces, then stress), each building a
        second-order graph for training; relaxation needs neither. The values are
        CHGNet's: the same batched graph, the same derivatives (stress = dE/dstrain / V).
        """
        import torch
        from chgnet.model.model import BatchedGraph

        model = self.model
        batch = BatchedGraph.from_graphs(
            graphs,
            bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion,
            compute_stress=True,
        )
        pred = model._compute(batch, compute_force=False, compute_stress=False)
        n_atoms = torch.tensor([len(p) for p in batch.atom_positions], dtype=pred["e"].dtype)
        composition = 0 if model.composition_model is None else model.composition_model(graphs)
        per_atom = pred["e"] + composition
        total = per_atom * n_atoms if model.is_intensive else per_atom
        n = len(graphs)
        grads = torch.autograd.grad(total.sum(), [*batch.atom_positions, *batch.strains])
        out = []
        for k in range(n):
            stress = grads[n + k] / batch.volumes[k] * 160.21766208
            out.append(
                (
                    float(total[k]),
                    -grads[k].detach().cpu().numpy(),
                    stress.detach().cpu().numpy(),
                )
            )
        return out

    def _graph(self, structure):
        if structure is None:
            return None
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                return self.model.graph_converter(structure)  # isolated atoms raise: a failure
        except POTENTIAL_ERRORS:
            return None

    def _predict(self, graphs: list) -> list[float]:
        import torch

        with torch.no_grad():  # energies only: no autograd graph, about 6x faster on a CPU
            return self._predict_graphs(graphs)

    def _predict_graphs(self, graphs: list) -> list[float]:
        try:
            preds = self.model.predict_graph(graphs, task="e", batch_size=len(graphs))
        except POTENTIAL_ERRORS:  # one bad graph spoils the batch: retry them one by one
            preds = []
            for g in graphs:
                try:
                    preds.append(self.model.predict_graph(g, task="e"))
                except POTENTIAL_ERRORS:
                    preds.append({"e": math.nan})
        if isinstance(preds, dict):
            preds = [preds]
        return [float(p["e"]) for p in preds]

    def ase_calculator(self) -> Any:
        from chgnet.model.dynamics import CHGNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):
            return CHGNetCalculator(model=self.model, use_device=self.device)
