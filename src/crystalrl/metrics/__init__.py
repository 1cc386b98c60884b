"""Metrics of generated structures (novelty, E_hull, validity, diversity) and their typed results.

Imports reference, potentials, data and vae (features); never rewards, which sit above it.
"""
