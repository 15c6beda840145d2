"""The transformers segmenter, on tiny random SegFormer and Mask2Former models saved like hub checkpoints: the
interface, preprocessing against the image processors, post-processing against transformers', the kit's pipeline
(masks, memory banks), the hub cache, offline failures, and the choice of backend."""
import json
import shutil

import pytest
import torch

pytest.importorskip("transformers")

from art2real.bank.memory import build_banks  # noqa: E402
from art2real.bank.patches import bank_membership, class_fractions  # noqa: E402
from art2real.config import get_config  # noqa: E402
from art2real.data.dataset import ImageFolder  # noqa: E402
from art2real.segment import hf  # noqa: E402
from art2real.segment.base import Segmenter  # noqa: E402
from art2real.segment.masks import load_masks, segment_folder  # noqa: E402

from .conftest import DEMO  # noqa: E402

# the first 13 ADE20K classes, in ADE order (ids 0-12 of the 150-class checkpoints)
ADE = ["wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
       "sidewalk", "person"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _labels():
    return {"num_labels": len(ADE), "id2label": dict(enumerate(ADE)), "label2id": {n: i for i, n in enumerate(ADE)}}


def tiny_segformer(folder, size=64):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    config = SegformerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64], num_attention_heads=[1, 1, 2, 4],
                             decoder_hidden_size=32, **_labels())
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


def tiny_mask2former(folder, size=None):
    from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor,
                              SwinConfig)

    torch.manual_seed(0)
    swin = SwinConfig(image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=32, dim_feedforward=32, encoder_layers=1, decoder_layers=2,
                               num_attention_heads=2, num_queries=8, use_pretrained_backbone=False, **_labels())
    model = Mask2FormerForUniversalSegmentation(config)
    with torch.no_grad():  # at init every query predicts the same class; spread them so labels vary
        model.class_predictor.weight.normal_(0, 1)
    model.save_pretrained(folder)
    # the ADE checkpoints' rule: short side to a size, long side capped, both rounded up to a multiple of 32
    size = size or {"shortest_edge": 64, "longest_edge": 128}
    Mask2FormerImageProcessor(size=size, size_divisor=32).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_models")
    return {"segformer": tiny_segformer(root / "tiny-segformer"),
            "mask2former": tiny_mask2former(root / "tiny-mask2former")}


@pytest.fixture(scope="module")
def segmenters(models):
    return {kind: hf.HFSegmenter(str(folder)) for kind, folder in models.items()}


@pytest.fixture
def paintings():
    return torch.stack(list(ImageFolder(DEMO / "trainA", 40, max_images=3)))


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache and no route to the hub; a download attempt fails the test."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ART2REAL_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf, "hub_reachable", lambda timeout=hf.HUB_TIMEOUT: False)
    real = hf._from_pretrained

    def local_only(spec, local_only):
        assert local_only, "the hub was asked"
        return real(spec, local_only)

    monkeypatch.setattr(hf, "_from_pretrained", local_only)
    return tmp_path / "hf_home" / "hub"


@pytest.mark.parametrize("kind", ["segformer", "mask2former"])
def test_interface_shapes_distributions_and_class_names(segmenters, paintings, kind):
    seg = segmenters[kind]
    assert isinstance(seg, Segmenter)
    assert seg.class_names == ADE
    probs = seg.probabilities(paintings)
    assert probs.shape == (3, len(ADE), 40, 40) and probs.dtype == torch.float32
    assert (probs >= 0).all() and torch.allclose(probs.sum(1), torch.ones(3, 40, 40), atol=1e-5)
    labels = seg.labels(paintings)
    assert labels.shape == (3, 40, 40) and labels.dtype == torch.int64
    assert torch.equal(labels, probs.argmax(1))
    assert len(labels.unique()) > 1  # not one class everywhere: the labels test can tell argmax from a constant


@pytest.mark.parametrize("kind", ["segformer", "mask2former"])
def test_a_batch_equals_its_images_one_by_one(segmenters, paintings, kind):
    seg = segmenters[kind]
    alone = torch.cat([seg.probabilities(paintings[i:i + 1]) for i in range(len(paintings))])
    assert torch.allclose(seg.probabilities(paintings), alone, atol=1e-5)


def _processors():
    from transformers import Mask2FormerImageProcessor, SegformerImageProcessor

    return {"segformer 64x64": SegformerImageProcessor(size={"height": 64, "width": 64}),
            "segformer 24x32 (down)": SegformerImageProcessor(size={"height": 24, "width": 32}),
            "mask2former short 64, long 128, /32": Mask2FormerImageProcessor(
                size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32),
            "mask2former short 96, long 100 (capped), /32": Mask2FormerImageProcessor(
                size={"shortest_edge": 96, "longest_edge": 100}, size_divisor=32)}


@pytest.mark.parametrize("name", list(_processors()))
def test_preprocessing_is_the_image_processors(name):
    processor = _processors()[name]
    u8 = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = hf.Preprocess.from_processor(processor)(u8.float() / 127.5 - 1)
    # on float pixels the processor resizes and normalises as we do ...
    theirs = processor(images=list(u8.float() / 255), do_rescale=False, return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5)
    # ... and on 8-bit images (how it is used) it rounds the resized pixels: at most one grey level apart
    theirs_u8 = processor(images=list(u8), return_tensors="pt")["pixel_values"]
    one_level = 1 / 255 / min(processor.image_std)
    assert (ours - theirs_u8).abs().max() <= one_level + 1e-5


def test_expected_resized_shapes():
    p = {k: hf.Preprocess.from_processor(v) for k, v in _processors().items()}
    assert p["segformer 64x64"].output_size(40, 56) == (64, 64)
    # short side 40 -> 64, long side 56 -> int(64 * 56 / 40) = 89, rounded up to 96
    assert p["mask2former short 64, long 128, /32"].output_size(40, 56) == (64, 96)
    # 96 x 134 would pass the cap of 100: long side 100, short int(100 * 40 / 56) = 71 -> 96 x 128 after /32
    assert p["mask2former short 96, long 100 (capped), /32"].output_size(40, 56) == (96, 128)


def test_filters_other_than_bilinear_are_refused():
    from transformers import SegformerImageProcessor

    with pytest.raises(ValueError, match="only bilinear"):
        hf.Preprocess.from_processor(SegformerImageProcessor(resample=3))


@pytest.mark.parametrize("kind", ["segformer", "mask2former"])
def test_post_processing_is_transformers_semantic_segmentation(models, tmp_path, paintings, kind):
    from transformers import AutoImageProcessor

    folder = models[kind]
    if kind == "mask2former":  # transformers upsamples Mask2Former masks to 384 x 384, the size its inputs have
        folder = tmp_path / "m2f384"
        shutil.copytree(models[kind], folder)
        from transformers import Mask2FormerImageProcessor

        Mask2FormerImageProcessor(size={"height": 384, "width": 384}).save_pretrained(folder)
    seg = hf.HFSegmenter(str(folder))
    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=list((paintings + 1) / 2), do_rescale=False, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = seg.net(pixel_values=pixels)
    ref = processor.post_process_semantic_segmentation(out, target_sizes=[(40, 40)] * 3,
                                                       return_segmentation_scores=True)
    scores = torch.stack([r.segmentation_scores for r in ref])
    expected = scores.softmax(1) if kind == "segformer" else scores / scores.sum(1, keepdim=True)
    assert torch.allclose(seg.probabilities(paintings), expected, atol=1e-5)
    assert torch.equal(seg.labels(paintings), torch.stack([r.segmentation for r in ref]))


@pytest.mark.parametrize("kind", ["segformer", "mask2former"])
def test_masks_and_memory_banks_of_the_demo_set(segmenters, tmp_path, kind):
    seg = segmenters[kind]
    masks = segment_folder(seg, DEMO / "trainA", tmp_path / "masks", size=32, progress=False)
    loaded, meta = load_masks(tmp_path / "masks")
    assert meta["segmenter"] == seg.name and meta["class_names"] == ADE and len(masks) == 34
    assert all(m.shape == (32, 32) and m.min() >= 0 and m.max() < len(ADE) for m in loaded.values())
    assert len(list((tmp_path / "masks" / "overlays").glob("*.jpg"))) == 34

    cfg = get_config("smoke", {"bank.scales": ((4, 4), (8, 5)), "bank.max_photos": 6}).bank
    banks = build_banks(DEMO / "trainB", seg, tmp_path / "banks", cfg, size=32, progress=False)
    meta = json.loads((tmp_path / "banks" / "meta.json").read_text())
    assert meta["segmenter"] == seg.name and meta["class_names"] == ADE
    assert not (tmp_path / "banks" / "segmenter.npz").exists()  # nothing to save: the name pins the weights
    # every bank holds exactly the 4x4 photo patches the segmenter's masks put in it (20% rule)
    photos = torch.stack(list(ImageFolder(DEMO / "trainB", 32, max_images=6)))
    member = bank_membership(class_fractions(seg.labels(photos), len(ADE), 4, 4), 0.2).reshape(-1, len(ADE) + 1)
    expected = {str(c): int(n) for c, n in zip(list(range(len(ADE))) + [-1], member.sum(0))}
    assert meta["counts"]["s4_4"] == expected
    assert sum(expected.values()) >= 6 * 64
    assert sorted(c for c in banks.banks[0] if c >= 0) == sorted(int(c) for c, n in expected.items()
                                                                 if n and c != "-1")


def test_name_pins_the_weights_of_a_local_folder(models, tmp_path, segmenters):
    name = segmenters["segformer"].name
    assert name.startswith("hf:tiny-segformer@sha256-")
    changed = tmp_path / "tiny-segformer"
    shutil.copytree(models["segformer"], changed)
    from transformers import SegformerForSemanticSegmentation

    model = SegformerForSemanticSegmentation.from_pretrained(changed)
    with torch.no_grad():
        model.decode_head.classifier.bias.add_(1)
    model.save_pretrained(changed)
    assert hf.HFSegmenter(str(changed)).name not in (name, "")


def _fake_hub_cache(hub, folder, repo="org/tiny-segformer"):
    """The hub cache layout: models--org--name/refs/main -> commit, snapshots/<commit>/<files>."""
    entry = hub / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(COMMIT)
    shutil.copytree(folder, entry / "snapshots" / COMMIT)


@pytest.mark.parametrize("offline_var", ["ART2REAL_OFFLINE", "HF_HUB_OFFLINE", None])
def test_hub_models_load_from_the_cache_offline(models, no_hub, monkeypatch, offline_var):
    if offline_var:
        monkeypatch.setenv(offline_var, "1")
    _fake_hub_cache(no_hub, models["segformer"])
    seg = hf.HFSegmenter("org/tiny-segformer")
    assert seg.name == f"hf:org/tiny-segformer@{COMMIT[:12]}"
    assert hf.HFSegmenter(f"org/tiny-segformer@{COMMIT}").name == seg.name
    assert hf.availability("org/tiny-segformer")[0]


@pytest.mark.parametrize("offline_var", ["ART2REAL_OFFLINE", "HF_HUB_OFFLINE", None])
def test_missing_weights_offline_fail_at_once_saying_how_to_fetch_them(no_hub, monkeypatch, offline_var):
    if offline_var:
        monkeypatch.setenv(offline_var, "1")
    why = (f"offline mode ({offline_var} is set)" if offline_var
           else "the hub (https://huggingface.co) cannot be reached")
    with pytest.raises(hf.WeightsUnavailable) as e:
        hf.HFSegmenter("nvidia/segformer-b4-finetuned-ade-512-512")
    message = str(e.value)
    assert "nvidia/segformer-b4-finetuned-ade-512-512 is not in the Hugging Face cache" in message
    assert why in message and str(no_hub) in message
    assert "`python -m art2real.segment.hf fetch nvidia/segformer-b4-finetuned-ade-512-512`" in message
    with pytest.raises(hf.WeightsUnavailable, match="fetch facebook/mask2former-swin-large-ade-semantic`"):
        hf.main(["fetch", "mask2former"])
    assert hf.availability("")[0] is False


def test_model_names_and_folders(tmp_path):
    assert hf.parse_model("") == hf.ModelSpec(hf.DEFAULT_MODEL)
    assert hf.parse_model("segformer") == hf.ModelSpec(hf.SEGFORMER)
    assert hf.parse_model("org/name@v1.0") == hf.ModelSpec("org/name", "v1.0")
    assert hf.parse_model(str(tmp_path)) == hf.ModelSpec(str(tmp_path.resolve()), local=True)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        hf.parse_model(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        hf.HFSegmenter(str(tmp_path))


def _cfg(backend, model=""):
    return get_config("smoke", {"segment.backend": backend, "segment.model": model})


def test_auto_picks_a_transformers_model_that_is_there(models, no_hub):
    backend, reason = hf.resolve_backend(_cfg("auto", str(models["segformer"])), strict=True)
    assert backend == "hf" and "local folder" in reason and str(models["segformer"]) in reason
    seg = hf.create(_cfg("auto", str(models["segformer"])), backend)
    assert seg.name.startswith("hf:tiny-segformer@")


def test_auto_downloads_when_the_hub_is_reachable(no_hub, monkeypatch):
    monkeypatch.setattr(hf, "hub_reachable", lambda timeout=hf.HUB_TIMEOUT: True)
    assert hf.resolve_backend(_cfg("auto")) == ("hf", f"auto: transformers model {hf.DEFAULT_MODEL}: "
                                                      "downloadable from https://huggingface.co")


def test_auto_falls_back_to_detectron2_then_kmeans_and_strict_refuses(no_hub, monkeypatch):
    monkeypatch.setenv("ART2REAL_OFFLINE", "1")
    installed = {"transformers", "detectron2"}
    monkeypatch.setattr(hf, "installed", lambda module: module in installed)
    backend, reason = hf.resolve_backend(_cfg("auto"), strict=True)
    assert backend == "detectron2" and "offline mode" in reason
    installed.discard("detectron2")
    backend, reason = hf.resolve_backend(_cfg("auto"))
    assert backend == "kmeans"
    assert f"{hf.DEFAULT_MODEL} is not in the Hugging Face cache" in reason and "detectron2 is not installed" in reason
    with pytest.raises(hf.NoSemanticSegmenter) as e:
        hf.resolve_backend(_cfg("auto"), strict=True)
    message = str(e.value)
    assert f"`python -m art2real.segment.hf fetch {hf.DEFAULT_MODEL}`" in message
    assert "segment.backend=kmeans" in message and "detectron2 is not installed" in message
    installed.discard("transformers")
    assert "transformers is not installed" in hf.resolve_backend(_cfg("auto"))[1]


def test_an_explicit_backend_is_kept_even_in_strict_mode():
    assert hf.resolve_backend(_cfg("kmeans"), strict=True) == ("kmeans", "segment.backend=kmeans was set explicitly")
    assert hf.resolve_backend(_cfg("hf"))[0] == "hf"
    with pytest.raises(ValueError, match="segment.backend must be one of auto, kmeans"):
        hf.resolve_backend(_cfg("deeplab"))
