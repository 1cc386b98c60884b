"""Stage 1: the crystal VAE (model, Lightning module, features for diversity and predictors).

Imports data and the training helpers; nothing above it (ldm, rl, metrics, rewards).
"""
