"""Stage 2: the latent diffusion model (DiT denoiser, Gaussian diffusion, samplers, export).

Imports data, vae and the training helpers; never rl, metrics or rewards.
"""
