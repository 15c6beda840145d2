"""Training: the Trainer (CycleGAN and Art2Real), image pool, schedules, resumable checkpoints."""
