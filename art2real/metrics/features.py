"""CNN features of image sets and their t-SNE embedding (paper Figure 4)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.dataset import ImageFolder
from ..outcomes import NotAvailable
from .models import classifier


def image_features(folder, model: str = "auto", size: int = 256, batch_size: int = 16, device="cpu"):
    """(names, (N, D) average-pool features, model name) of the readable images of a folder."""
    net = classifier(model, device)
    if isinstance(net, NotAvailable):
        return net
    images = ImageFolder(folder, size)
    feats = [net.run(batch.to(device))[1].double().cpu().numpy() for batch in images.batches(batch_size)]
    return [images.name(i) for i in range(len(images))], np.concatenate(feats), net.name


def tsne_table(sets: list[tuple[str, str, object]], model: str = "auto", seed: int = 0, size: int = 256,
               device="cpu") -> pd.DataFrame | NotAvailable:
    """t-SNE of the features of several sets, given as (domain, method, folder); one row per image with
    columns image, domain, method, x, y (and the feature model)."""
    from sklearn.manifold import TSNE

    rows, blocks, name = [], [], None
    for domain, method, folder in sets:
        result = image_features(folder, model, size, device=device)
        if isinstance(result, NotAvailable):
            return result
        names, feats, name = result
        rows += [{"image": n, "domain": domain, "method": method} for n in names]
        blocks.append(feats)
    data = np.concatenate(blocks)
    perplexity = float(min(30, max(2, (len(data) - 1) // 3)))
    xy = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(data)
    table = pd.DataFrame(rows)
    table["x"], table["y"], table["model"] = xy[:, 0], xy[:, 1], name
    return table
