"""Batched against serial relaxation: the same structures, the same FIRE, CHGNet.

    python benchmarks/relax_speed.py [--n 200] [--serial-n N] [--batch-size 64]
        [--fmax 0.05] [--max-steps 300] [--serial-forces calculator|one-pass]
        [--noise-floor] [SAMPLES]

``SAMPLES`` is what ``crystalrl.relax`` reads (a folder of samples, a samples.json.gz, a
CSV); without it the shipped base model draws ``n`` samples first (DDIM, 50 steps, seed 0).
Both paths relax the first ``n`` structures (``--serial-n``: the serial path only the
first N of them, when its hours are not affordable; the comparisons then use those N),
skipping collapsed cells as ``crystalrl.relax`` does. Prints one JSON line: seconds per
structure each way, the speed-up, the largest energy difference after relaxation
(eV/atom), the converged fractions, and how close the batched path comes to its physical
limit: CHGNet's batched forward and backward pass (energies, forces, stress) per
structure-step, times the structure-steps the relaxation took, measured warm on one
repeated batch and (``in_run_*``) inside the run on each call's new graphs, with the
share of the time spent in calls of less than half a batch once the queue has run dry.
``--serial-forces one-pass`` gives the serial path the batched path's own forces, one
structure at a time, so that batching is the only difference; by default it uses CHGNet's
ASE calculator, whose two-pass forces differ from the one-pass ones by about 1e-4 eV/Å.
``--noise-floor`` relaxes the serial structures a second time, the same way on one torch
thread instead of the default: how far the serial path departs from itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from crystalrl.metrics.structures_io import read_structures
from crystalrl.metrics.validity import cell_collapsed
from crystalrl.potentials import CHGNetEnergy, relax
from crystalrl.potentials.relaxation import relax_batched, relax_serial


def base_samples(n: int, folder: Path) -> Path:
    """``n`` samples of the shipped base model, as the README draws them."""
    command = [
        sys.executable,
        "-m",
        "crystalrl.sample",
        "ldm_ckpt_path=${hub:mp_20_ldm_base}",
        f"num_samples={n}",
        f"batch_size={n}",
        f"output_dir={folder}",
        "sampler=ddim",
        "sampling_steps=50",
        "seed=0",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return folder


def forward_backward_seconds(model, structures: list, repeats: int = 3) -> tuple[float, float]:
    """Seconds per structure of CHGNet's batched energy-forces-stress prediction, and of
    building the graphs it needs, on one batch of ``structures``."""
    start = time.perf_counter()
    graphs = [g for g in (model._graph(s) for s in structures) if g is not None]
    graph_s = (time.perf_counter() - start) / max(len(graphs), 1)
    times = []
    with model._threads():
        model._efs(graphs)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model._efs(graphs)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / len(graphs), graph_s


class CallTimes:
    """Seconds spent inside a method of the potential, and the structures it was given:
    where the batched relaxation's time goes, measured in the run itself."""

    def __init__(self, model, name: str):
        self.seconds = self.small_seconds = 0.0
        self.calls = self.items = self.small_items = 0
        self.small = max(int(model.batch_size) // 2, 1)
        inner = getattr(model, name)

        def timed(items, *args):
            start = time.perf_counter()
            out = inner(items, *args)
            spent = time.perf_counter() - start
            n = len(items) if isinstance(items, list | tuple) else 1
            self.seconds += spent
            self.calls += 1
            self.items += n
            if n < self.small:
                self.small_seconds += spent
                self.small_items += n
            return out

        setattr(model, name, timed)


def compare(serial: list, batched: list) -> dict:
    """Energy agreement and convergence over the structures both paths relaxed."""
    both = [(a, b) for a, b in zip(serial, batched, strict=False) if not a.failed and not b.failed]
    diff = np.array([abs(a.energy_per_atom - b.energy_per_atom) for a, b in both])
    n = len(serial)
    return {
        "max_abs_energy_diff_ev_per_atom": round(float(diff.max()), 5) if diff.size else None,
        "mean_abs_energy_diff_ev_per_atom": round(float(diff.mean()), 6) if diff.size else None,
        "energy_diff_over_0.005": int((diff > 0.005).sum()),
        "converged_fraction_serial": round(sum(r.converged for r in serial) / n, 4),
        "converged_fraction_batched": round(sum(r.converged for r in batched[:n]) / n, 4),
        "failed_serial": sum(r.failed for r in serial),
        "failed_batched": sum(r.failed for r in batched[:n]),
        "mean_steps_serial": round(float(np.mean([r.steps for r in serial if not r.failed])), 1),
        "mean_steps_batched": round(
            float(np.mean([r.steps for r in batched[:n] if not r.failed])), 1
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("samples", nargs="?", help="structures to relax (default: base samples)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--serial-n", type=int, default=None, help="serial path: first N only")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the potential's")
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument(
        "--serial-forces",
        choices=["calculator", "one-pass"],
        default="calculator",
        help="the serial path's forces: CHGNet's ASE calculator (what crystalrl.relax did "
        "before batching), or the batched path's own one-pass forces on one structure at a "
        "time, which leaves batching as the only difference",
    )
    parser.add_argument(
        "--noise-floor",
        action="store_true",
        help="relax the serial structures again, the same way on one torch thread: how far "
        "the serial path departs from itself",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(args.samples) if args.samples else base_samples(args.n, Path(tmp))
        structures, _ = read_structures(str(source), args.n)
    n_serial = min(args.serial_n or len(structures), len(structures))
    model = CHGNetEnergy()
    if args.batch_size:
        model.batch_size = args.batch_size
    options = {"fmax": args.fmax, "max_steps": args.max_steps, "relax_cell": True}

    _ = model.model  # loads the weights: neither path pays for that
    calls = CallTimes(model, "evaluate_batch")
    passes, graphs = CallTimes(model, "_efs"), CallTimes(model, "_graph")
    start = time.perf_counter()
    batched = relax(structures, model, skip=cell_collapsed, **options)
    batched_s = time.perf_counter() - start
    for timed in ("evaluate_batch", "_efs", "_graph"):
        delattr(model, timed)  # the serial path and the warm figure below run untimed
    # after the batched run: CHGNet's calculator makes the shared graph converter keep
    # structures with an isolated atom (warn), where the batched path fails them (error)
    calculator = model.ase_calculator()

    def relax_one_at_a_time() -> list:
        if args.serial_forces == "one-pass":
            return relax_batched(
                structures[:n_serial],
                model.evaluate_batch,
                batch_size=1,
                skip=cell_collapsed,
                **options,
            )
        return [
            relax_serial(s, calculator, skip=cell_collapsed, **options)
            for s in structures[:n_serial]
        ]

    start = time.perf_counter()
    serial = relax_one_at_a_time()
    serial_s = time.perf_counter() - start

    repeat = {}
    if args.noise_floor:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        again = relax_one_at_a_time()
        torch.set_num_threads(threads)
        floor = compare(serial, again)
        repeat = {
            "serial_repeat_max_abs_energy_diff_ev_per_atom": floor[
                "max_abs_energy_diff_ev_per_atom"
            ],
            "serial_repeat_energy_diff_over_0.005": floor["energy_diff_over_0.005"],
            "serial_repeat_converged_fraction": floor["converged_fraction_batched"],
        }

    valid = [s for s in structures if s is not None and not cell_collapsed(s)]
    fb_s, graph_s = forward_backward_seconds(model, valid[: model.batch_size])
    evaluations = sum(r.steps + 1 for r in batched if not r.failed)
    limit_s = fb_s * evaluations
    serial_per = serial_s / n_serial
    batched_per = batched_s / len(structures)
    line = {
        "n": len(structures),
        "n_serial": n_serial,
        "serial_forces": args.serial_forces,
        "batch_size": model.batch_size,
        "fmax": args.fmax,
        "max_steps": args.max_steps,
        "serial_s_per_structure": round(serial_per, 3),
        "batched_s_per_structure": round(batched_per, 3),
        "speedup": round(serial_per / batched_per, 2),
        **compare(serial, batched),
        **repeat,
        "converged_fraction_batched_all": round(
            sum(r.converged for r in batched) / len(structures), 4
        ),
        "forward_backward_s_per_structure_step": round(fb_s, 5),
        "graph_s_per_structure_step": round(graph_s, 5),
        "physical_limit_s": round(limit_s, 1),
        "batched_s": round(batched_s, 1),
        "batched_over_physical_limit": round(batched_s / limit_s, 2),
        # the same pass inside the run, on new graphs each call, and where the rest goes
        "in_run_forward_backward_s": round(passes.seconds, 1),
        "in_run_forward_backward_s_per_structure_step": round(
            passes.seconds / max(passes.items, 1), 5
        ),
        "in_run_graph_s": round(graphs.seconds, 1),
        "in_run_potential_call_fraction": round(calls.seconds / batched_s, 3),
        "batched_over_in_run_forward_backward": round(batched_s / max(passes.seconds, 1e-9), 2),
        "potential_calls": calls.calls,
        "structure_steps": calls.items,
        "small_call_structure_step_fraction": round(calls.small_items / max(calls.items, 1), 3),
        "small_call_time_fraction": round(calls.small_seconds / max(calls.seconds, 1e-9), 3),
        "projected_1000_minutes": round(batched_per * 1000 / 60, 1),
    }
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
