"""Networks (CycleGAN layout), GAN losses, the semantic contextual loss, and DRIT (a baseline of the paper)."""
