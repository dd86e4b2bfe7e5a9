"""Data sets and the one training loop (seeded, logs train/val NLL in bits/dim, checkpoints)."""
