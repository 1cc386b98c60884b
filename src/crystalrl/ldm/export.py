"""Shippable LDM checkpoints: EMA weights as the denoiser, half precision, no optimizer.

``python -m crystalrl.ldm.export SRC DST [--vae VAE_CKPT] [--fp32]``

``--vae`` pairs the denoiser with another VAE's decoder. Only the decoder may differ: the
denoiser was trained on the encoder's latents, so a VAE with a different encoder is
refused (a decoder fine-tuned with its encoder frozen keeps it).
"""

from __future__ import annotations

import argparse

from crystalrl.ldm.exporting import export_ldm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crystalrl.ldm.export", description=__doc__)
    parser.add_argument("src", help="an LDM or RL checkpoint (Lightning or exported)")
    parser.add_argument("dst")
    parser.add_argument("--vae", help="take the decoder from this VAE checkpoint")
    parser.add_argument("--fp32", action="store_true", help="keep float32 weights")
    args = parser.parse_args(argv)
    export_ldm(args.src, args.dst, half=not args.fp32, vae=args.vae)
    print(f"Wrote {args.dst}")


if __name__ == "__main__":
    main()
