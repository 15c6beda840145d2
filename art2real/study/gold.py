"""Gold pairs: one image of the pair is clearly worse, so a rater who attends to the question gets it right.

Recipe (recorded in every manifest as ``gold_recipe``):

* realism: a real translation against the same translation degraded (below);
* coherence: the painting's translation against the translation of *another* painting, degraded the same way,
  so the wrong answer is both unfaithful and visibly worse;
* degradation: Gaussian blur with radius 4% of the short side (10 px at 256 px), then i.i.d. Gaussian noise of
  standard deviation 40 grey levels per channel, clipped to [0, 255], saved as PNG;
* the clean image cycles over all methods (Art2Real and each competitor), so the gate does not teach raters
  that one method's look is the right answer.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

BLUR_FRACTION = 0.04
NOISE_SIGMA = 40.0

RECIPE = {
    "realism": "translation vs. the same translation degraded",
    "coherence": "translation of the painting vs. the translation of another painting, degraded",
    "degradation": f"Gaussian blur radius {BLUR_FRACTION:g} x short side, then Gaussian noise sigma "
                   f"{NOISE_SIGMA:g}/255 per channel, clipped; PNG",
    "clean_method": "cycles over Art2Real and every competitor",
}


def degrade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Heavy blur plus noise (see the module docstring)."""
    radius = max(1.0, BLUR_FRACTION * min(image.size))
    blurred = np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)), dtype=np.float64)
    noisy = blurred + rng.normal(0.0, NOISE_SIGMA, blurred.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8), "RGB")
