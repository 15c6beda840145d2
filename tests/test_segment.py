"""Segmenters: k-means consistency across save/load, mask storage, detectron2 output conversion."""
import numpy as np
import pytest
import torch

from art2real.data.dataset import ImageFolder
from art2real.segment.backends import panoptic_to_labels, panoptic_vocabulary
from art2real.segment.kmeans import KMeansSegmenter
from art2real.segment.masks import load_masks, segment_folder

from .conftest import DEMO


@pytest.fixture(scope="module")
def fitted():
    photos = ImageFolder(DEMO / "trainB", 64, max_images=6)
    return KMeansSegmenter(n_classes=4, feature_size=64).fit(photos[i] for i in range(len(photos)))


def test_kmeans_labels_survive_save_and_load(fitted, tmp_path):
    images = torch.stack(list(ImageFolder(DEMO / "testA", 64, max_images=3)))
    probs = fitted.probabilities(images)
    assert probs.shape == (3, 4, 64, 64)
    assert torch.allclose(probs.sum(1), torch.ones(3, 64, 64), atol=1e-5)
    fitted.save(tmp_path / "seg.npz")
    again = KMeansSegmenter.load(tmp_path / "seg.npz")
    assert again.name == fitted.name
    assert torch.equal(again.labels(images), fitted.labels(images))
    assert len(torch.unique(fitted.labels(images))) > 1  # not one class everywhere


def test_masks_per_image_with_overlays(fitted, tmp_path):
    masks = segment_folder(fitted, DEMO / "testA", tmp_path / "masks", size=32, progress=False)
    stems = sorted(p.name for p in (DEMO / "testA").iterdir())
    assert sorted(masks) == stems
    loaded, meta = load_masks(tmp_path / "masks")
    assert meta["segmenter"] == fitted.name and meta["size"] == 32
    assert all(np.array_equal(loaded[k], masks[k]) for k in masks)
    assert len(list((tmp_path / "masks" / "overlays").glob("*.jpg"))) == len(stems)


def test_detectron2_panoptic_conversion_on_a_recorded_output():
    # the structure DefaultPredictor returns for panoptic FPN: a segment-id map and segments_info
    seg = torch.tensor([[0, 1, 1], [2, 2, 3], [3, 3, 0]], dtype=torch.int32)
    info = [{"id": 1, "isthing": True, "category_id": 0, "score": 0.9, "instance_id": 0},
            {"id": 2, "isthing": False, "category_id": 2, "area": 2},
            {"id": 3, "isthing": False, "category_id": 1, "area": 3}]
    things, stuff = ["person", "dog"], ["things", "sky", "grass"]
    assert panoptic_vocabulary(things, stuff) == ["person", "dog", "sky", "grass"]
    labels = panoptic_to_labels(seg, info, things, stuff)
    assert labels.tolist() == [[-1, 0, 0], [3, 3, 2], [2, 2, -1]]


def test_missing_detectron2_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_detectron2(name, *args, **kwargs):
        if name.startswith("detectron2"):
            raise ImportError("No module named 'detectron2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_detectron2)
    from art2real.segment.backends import Detectron2Segmenter

    with pytest.raises(ImportError, match="not on PyPI"):
        Detectron2Segmenter()


def test_torchvision_segmenter_without_cached_weights_says_how_to_get_them(monkeypatch, tmp_path):
    from art2real.segment.backends import TorchvisionSegmenter

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty torch cache
    with pytest.raises(FileNotFoundError, match="not available: deeplabv3_resnet50 weights .* not in the torch cache"):
        TorchvisionSegmenter("deeplabv3_resnet50")
