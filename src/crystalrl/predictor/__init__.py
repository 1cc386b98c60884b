"""Property predictors on frozen VAE features (what PredictorReward and evaluate's targets use).

Imports data, vae and the shared helpers (checkpoint_io, shared_step); never ldm, rl, metrics
or rewards.
"""

from crystalrl.predictor.module import PredictorModule, load_predictor

__all__ = ["PredictorModule", "load_predictor"]
