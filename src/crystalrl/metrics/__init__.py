"""Metrics of generated structures (novelty, E_hull, validity, diversity) and their typed results.

Imports reference, data and vae (features); never rewards or evaluation, which sit above it.
"""
