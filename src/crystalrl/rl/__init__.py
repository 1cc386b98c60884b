"""Stage 3: GRPO fine-tuning of the LDM toward a reward (loss in grpo.py, loop in module.py,
settings and their defaults in config.py, their checks in checks.py).

The top of the pipeline: imports data, vae, ldm, rewards and the shared helpers (optimization,
checks).
"""
