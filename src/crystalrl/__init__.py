"""crystalrl: crystals from a latent diffusion model, fine-tuned with GRPO toward chosen rewards.

The pipeline is data -> vae -> ldm -> rl, with reference/potentials -> metrics -> rewards
beside it; see docs/architecture.md for the one-way imports.
"""
