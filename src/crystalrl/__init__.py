"""crystalrl: crystals from a latent diffusion model, fine-tuned with GRPO toward chosen rewards.

The pipeline is data -> vae -> ldm -> rl, with potentials -> reference -> metrics -> rewards
beside it and evaluation -> reporting on top; the commands (``python -m crystalrl.X``) are
thin entry points over this library. See docs/architecture.md for the one-way imports.
"""
