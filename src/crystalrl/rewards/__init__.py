"""Rewards for RL fine-tuning: components, their weighted sum, batch normalisations."""

from crystalrl.rewards.components import (
    CompositionDiversityReward,
    CreativityReward,
    CustomReward,
    EnergyReward,
    PredictorReward,
    RewardComponent,
    StructureDiversityReward,
)
from crystalrl.rewards.normalize import NORMALIZATIONS, NormalizationError, normalize
from crystalrl.rewards.reward import ReinforceReward, RewardError, RewardOutput

__all__ = [
    "NORMALIZATIONS",
    "CompositionDiversityReward",
    "CreativityReward",
    "CustomReward",
    "EnergyReward",
    "NormalizationError",
    "PredictorReward",
    "ReinforceReward",
    "RewardComponent",
    "RewardError",
    "RewardOutput",
    "StructureDiversityReward",
    "normalize",
]
