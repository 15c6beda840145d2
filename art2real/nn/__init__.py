"""Networks (CycleGAN layout), GAN losses, and the semantic contextual loss."""
