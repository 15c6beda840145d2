"""CycleGAN's image pool: the discriminator sees a history of 50 generated images, not only the latest."""
from __future__ import annotations

import random

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)  # own generator: its state travels with checkpoints

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """With the pool full, each image is swapped with a stored one with probability 0.5."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": [i.cpu() for i in self.images], "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict, device=None) -> None:
        self.size = state["size"]
        self.images = [i.to(device) if device is not None else i for i in state["images"]]
        self.rng.setstate(state["rng"])
