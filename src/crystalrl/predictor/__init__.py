"""Property predictors on VAE features (used by PredictorReward and evaluation)."""

from crystalrl.predictor.module import PredictorModule, load_predictor

__all__ = ["PredictorModule", "load_predictor"]
