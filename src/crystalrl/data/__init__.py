"""Datasets as the pipeline reads them: CDVAE-layout CSVs parsed (and cached) into padded batches.

The bottom of the pipeline: imports nothing else from crystalrl.
"""
