"""FID against closed forms and pytorch-fid, KID, entropies, features, validation."""
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from art2real.metrics.entropy import box_class_posteriors, classification_entropy, detection_entropy, entropy
from art2real.metrics.fid import fid, frechet_distance, kid, statistics
from art2real.metrics.inception import cached_features, content_key, inception_features
from art2real.outcomes import NotAvailable

from .conftest import DEMO


def random_cov(rng, d, scale=1.0):
    a = rng.normal(size=(d, 2 * d)) * scale
    return a @ a.T / (2 * d)


def test_frechet_closed_forms():
    rng = np.random.default_rng(0)
    d = 16
    s = random_cov(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    assert frechet_distance(mu1, s, mu1, s) == pytest.approx(0, abs=1e-9)  # identical
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-9)  # equal covs
    a, b = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)  # diagonal: sum (sqrt a - sqrt b)^2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(
        ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-9)
    c = 2.5  # scaled: S2 = c^2 S1 -> tr(S1) (1 - c)^2
    assert frechet_distance(mu1, s, mu1, c * c * s) == pytest.approx(np.trace(s) * (1 - c) ** 2, rel=1e-9)


def test_frechet_agrees_with_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    for d in (8, 64, 256):
        f1 = rng.normal(size=(600, d)) @ rng.normal(size=(d, d))
        f2 = rng.normal(size=(500, d)) @ rng.normal(size=(d, d)) + 0.3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (m1, s1), (m2, s2) = statistics(f1), statistics(f2)
        ours, theirs = frechet_distance(m1, s1, m2, s2), calculate_frechet_distance(m1, s1, m2, s2)
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_singular_covariances_stay_real_and_small_sets_warn():
    rng = np.random.default_rng(2)
    f1, f2 = rng.normal(size=(10, 64)), rng.normal(size=(12, 64))  # rank 9 and 11 in 64 dimensions
    with pytest.warns(UserWarning, match="< 2048"):
        value = fid(f1, f2)
    assert np.isfinite(value) and isinstance(value, float) and value > 0
    with pytest.warns(UserWarning):
        assert fid(f1, f1) == pytest.approx(0, abs=1e-4)


def test_kid_identical_and_shifted():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 32))
    same, _ = kid(x, x.copy(), subsets=20, subset_size=200)
    near, _ = kid(x, rng.normal(size=(400, 32)), subsets=20, subset_size=200)
    small, _ = kid(x, rng.normal(size=(400, 32)) + 0.3, subsets=20, subset_size=200)
    large, _ = kid(x, rng.normal(size=(400, 32)) + 1.0, subsets=20, subset_size=200)
    # unbiased: ~0 for samples of one distribution (sets sharing points land slightly below 0)
    assert abs(near) < 0.02 * small and abs(same) < 0.2 * small
    assert large > small > 0
    assert kid(x, x + 1, seed=5, subsets=5, subset_size=50) == kid(x, x + 1, seed=5, subsets=5, subset_size=50)


def test_entropy_of_uniform_and_one_hot():
    assert entropy(torch.full((10,), 0.1)).item() == pytest.approx(math.log(10))
    assert entropy(torch.full((8,), 1 / 8), base=2).item() == pytest.approx(3.0)
    assert entropy(torch.eye(5)[2]).item() == 0.0
    probs = torch.full((2, 4, 3, 3), 0.25)
    assert entropy(probs, dim=1).shape == (2, 3, 3)


def test_offline_classifier_recognises_a_known_photo():
    import matplotlib.cbook as cbook

    from art2real.backbones import lite0_classify
    from art2real.data.images import load_rgb, to_tensor

    x = to_tensor(load_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))).unsqueeze(0)
    logits, features = lite0_classify(x)
    assert logits.argmax().item() == 652  # ImageNet 'military uniform'
    assert features.shape == (1, 1280)


def test_classification_entropy_records_model_and_base():
    result = classification_entropy(DEMO / "testB", model="efficientnet_lite0")
    assert result.n == len(list((DEMO / "testB").iterdir()))
    assert 0 < result.value < math.log(1000) and result.note.startswith("nats") and "lite0" in result.model


def test_missing_weights_are_reported_not_invented(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty torch cache
    result = classification_entropy(DEMO / "testB", model="resnet152")
    assert isinstance(result, NotAvailable) and result.reason.startswith("resnet152 weights")
    assert "IMAGENET1K_V1" in result.fix  # the 2019 weights, not V2's label-smoothed ones
    assert isinstance(detection_entropy(DEMO / "testB"), NotAvailable)


def test_box_posteriors_sum_to_one():
    import torchvision

    torch.manual_seed(0)  # random weights: checks the plumbing only, never reported as a result
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                  min_size=128, max_size=128).eval()
    model.roi_heads.score_thresh = 0.0
    posteriors = box_class_posteriors(model, torch.rand(1, 3, 96, 128) * 2 - 1)
    assert posteriors[0].shape[1] == 91 and len(posteriors[0]) > 0
    assert torch.allclose(posteriors[0].sum(-1), torch.ones(len(posteriors[0])), atol=1e-5)


def test_inception_features_and_content_cache(tmp_path):
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 80, 3), np.uint8)).save(tmp_path / f"{i}.png")
    feats = cached_features(tmp_path, progress=False)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64 and (feats >= 0).all()
    key = content_key(tmp_path, "size=None")
    assert np.array_equal(cached_features(tmp_path, progress=False), feats)  # served from the cache
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "0.png")
    assert content_key(tmp_path, "size=None") != key  # new content, new key
    single = inception_features(torch.from_numpy(np.array(Image.open(tmp_path / "1.png"))).permute(2, 0, 1)[None])
    assert np.allclose(single[0], feats[1], atol=1e-4)


def test_inception_equals_shipped_network_and_pytorch_fid():
    from art2real.metrics.inception import preprocess, pytorch_fid_network, scripted_inception

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 96, 128), np.uint8))
    ours = inception_features(images)
    with torch.inference_mode():
        shipped = scripted_inception()(preprocess(images)).flatten(1).double().numpy()
        theirs = pytorch_fid_network()(images.float() / 255)[0].flatten(1).double().numpy()
    assert ours.shape == (2, 2048) and ours.max() > 0.1
    assert np.abs(ours - shipped).max() < 1e-4 and np.abs(ours - theirs).max() < 1e-4


def test_imagenet_input_maps_black_and_white():
    from art2real.backbones import IMAGENET_MEAN, IMAGENET_STD, imagenet_input

    x = torch.stack([-torch.ones(3, 2, 2), torch.ones(3, 2, 2)])
    out = imagenet_input(x)[:, :, 0, 0]
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[0], -mean / std) and torch.allclose(out[1], (1 - mean) / std)


@pytest.mark.parametrize("metric", ["fid", "kid"])
def test_validator_scores_translated_paintings_against_the_photos(tiny_dataset, metric):
    from art2real.bank.patches import to_u8
    from art2real.config import get_config
    from art2real.data.dataset import ImageFolder
    from art2real.metrics.validation import Validator
    from art2real.nn.networks import build_generator

    cfg = get_config("smoke", {"data.dataset": str(tiny_dataset), "train.val_images": 3, "train.val_metric": metric})
    torch.manual_seed(0)
    G = build_generator(cfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small sets
        value = Validator(cfg)(G)
        with torch.no_grad():
            fakes = to_u8(G(torch.stack(list(ImageFolder(tiny_dataset / "trainA", 32, 3)))))
        photos = cached_features(tiny_dataset / "trainB", progress=False, size=32)
        expected = fid(inception_features(fakes), photos) if metric == "fid" else \
            kid(inception_features(fakes), photos, subsets=50, seed=cfg.seed)[0]
    assert value == pytest.approx(expected, rel=1e-6, abs=1e-9)
