"""Stage 2: the latent diffusion model (DiT denoiser, Gaussian diffusion, samplers, export).

Imports data, vae, metrics.geometry (the probes' baseline) and the shared helpers
(optimization, checkpoint_io, checkpoint_kind, checkpoint_registry); never rl or rewards.
"""
