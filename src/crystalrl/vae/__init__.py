"""Stage 1: the crystal VAE (model, Lightning module, features for diversity and predictors).

Imports data and the shared helpers (checkpoint_io, shared_step); nothing above it (ldm, rl,
metrics, rewards).
"""
