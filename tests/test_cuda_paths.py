"""The CUDA paths end to end under the CUDA stand-in (tests/fake_cuda.py), at smoke scale on data/demo: Art2Real
training with the retrieval worker, capped and resumed (also on a machine with fewer GPUs, and with
``train.deterministic``), validation on the device of G(x), tiled translation, evaluation, entropies and t-SNE.
The stand-in computes on the CPU, so every number must equal the CPU's; what it checks is that the code keeps
tensors on their device, copies to the host only where it means to, and uses the retrieval thread."""
import logging
import shutil
import threading
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode
from torch.utils.data import DataLoader

from art2real.config import get_config
from art2real.data.dataset import EpochView, UnpairedDataset
from art2real.methods.cyclegan import CycleGAN
from art2real.metrics import inception as inception_module
from art2real.metrics import validation as validation_module
from art2real.train.checkpoint import load_checkpoint
from art2real.train.trainer import Trainer, build_method

from .conftest import DEMO
from .fake_cuda import StandInCudaTensor, fake_cuda


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda-paths-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(module_cache, monkeypatch):
    """This module's tests share one cache: the demo's segmenter, banks and masks are built once."""
    monkeypatch.setenv("ART2REAL_CACHE", str(module_cache))


def config(device: str, **overrides):
    return get_config("smoke", {"data.dataset": "demo", "train.validate_every": 1, **overrides}, method="art2real",
                      device=device)


def first_batch(cfg) -> dict:
    d = cfg.data
    data = UnpairedDataset(DEMO, d.image_size, "train", d.max_images, d.crop_margin, d.flip, cfg.seed)
    return next(iter(DataLoader(EpochView(data, 0), batch_size=cfg.train.batch_size)))


def weights(run_dir) -> tuple[dict, dict]:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return state, state["method"]["nets"]


def assert_same_weights(a_dir, b_dir) -> None:
    (a_state, a), (b_state, b) = weights(a_dir), weights(b_dir)
    assert a_state["iteration"] == b_state["iteration"] == 8
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs"
    assert a_state["history"] == b_state["history"]  # the validation metric too, epoch by epoch


# ------------------------------------------------------------------------------- spies
class HostCopies(TorchFunctionMode):
    """Device-to-host transfers made in the thread that enters it: (how, numel, non_blocking, into pinned)."""

    SCALAR: ClassVar[set] = {torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__,
              torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__array__}

    def __init__(self):
        super().__init__()
        self.copies: list[tuple[str, int, bool, bool]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        src = args[0] if args else None
        if func is torch.Tensor.copy_ and not isinstance(src, StandInCudaTensor) \
                and isinstance(args[1], StandInCudaTensor):
            self.copies.append(("copy_", args[1].numel(), bool(kwargs.get("non_blocking", False)),
                                src.is_pinned()))
        elif isinstance(src, StandInCudaTensor):
            if func is torch.Tensor.cpu:
                self.copies.append(("cpu", src.numel(), False, False))
            elif func is torch.Tensor.to:
                device, _, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
                if device is not None and device.type == "cpu":
                    self.copies.append(("to", src.numel(), non_blocking, False))
            elif func in self.SCALAR:
                self.copies.append((func.__name__, src.numel(), False, False))
        return func(*args, **kwargs)


def one_step(device: str):
    """One Art2Real step from the same seed: its losses, G's weights after it, and who retrieved what."""
    cfg = config(device)
    method = build_method(cfg, progress=False)
    retrievals = []
    retrieve = method.context.loss_fn.retrieve

    def spy(fake, labels):
        retrievals.append((threading.current_thread().name, fake.device.type, fake.is_pinned()))
        return retrieve(fake, labels)

    method.context.loss_fn.retrieve = spy
    batch = first_batch(cfg)
    copies = HostCopies()
    with copies:
        losses = method.train_step(batch)
    G = {k: v.detach().cpu().clone() for k, v in method.G.state_dict().items()}
    return losses, G, retrievals, copies.copies, (batch["A"].numel())


def test_art2real_step_on_cuda_retrieves_in_the_worker_and_equals_the_cpu():
    cpu_losses, cpu_G, cpu_retrievals, _, _ = one_step("cpu")
    with fake_cuda():
        losses, G, retrievals, copies, numel = one_step("cuda")
    assert cpu_retrievals == [("MainThread", "cpu", False)]  # on the CPU it would only compete for the cores
    assert len(retrievals) == 1 and retrievals[0][0].startswith("retrieval")
    assert retrievals[0][1:] == ("cpu", True)  # the worker searches the pinned host copy of G(x)
    assert losses == cpu_losses and "cx" in losses and losses["cx"] > 0
    assert all(torch.equal(G[k], cpu_G[k]) for k in G)
    # the main thread copies G(x) to the host once, without blocking, into pinned memory; otherwise it reads
    # scalars only (the loss values, and the bounds of each block of rows in the contextual loss)
    assert [c for c in copies if c[1] > 1] == [("copy_", numel, True, True)], copies
    assert {c[0] for c in copies if c[1] == 1} <= {"__float__", "__int__", "item"}


@pytest.fixture(scope="module")
def straight(module_cache, tmp_path_factory):
    """An uninterrupted smoke run on the stand-in's cuda:0, validated (KID) after each epoch, with a record of the
    devices the validation features were computed on."""
    seen = {"cached_features": [], "folder_features": [], "inception_features": []}
    cached, folder, features = (validation_module.cached_features, inception_module.folder_features,
                                validation_module.inception_features)

    def spy_cached(folder_, device="cpu", *a, **k):
        seen["cached_features"].append(str(device))
        return cached(folder_, device, *a, **k)

    def spy_folder(folder_, batch_size=32, device="cpu", *a, **k):
        seen["folder_features"].append(str(device))
        return folder(folder_, batch_size, device, *a, **k)

    def spy_features(images):
        seen["inception_features"].append(str(images.device))
        return features(images)

    run = tmp_path_factory.mktemp("runs") / "straight"
    with pytest.MonkeyPatch.context() as m:
        m.setenv("ART2REAL_CACHE", str(module_cache))
        m.setattr(validation_module, "cached_features", spy_cached)
        m.setattr(inception_module, "folder_features", spy_folder)
        m.setattr(validation_module, "inception_features", spy_features)
        with fake_cuda():
            trainer = Trainer(config("cuda"), run, progress=False)
            summary = trainer.fit(progress=False)
            banks_device = trainer.method.context.banks.device
    return {"dir": run, "summary": summary, "seen": seen, "banks_device": banks_device}


def test_validation_features_are_computed_on_the_device_of_G(straight):
    assert straight["summary"]["epochs_done"] == 2 and len(straight["summary"]["history"]) == 2
    assert straight["banks_device"] == "cuda:0"  # FAISS would search on GPU 0 (CPU here: faiss-cpu)
    seen = straight["seen"]
    assert seen["cached_features"] == ["cuda:0"]  # the photos' features once per device, then kept
    assert seen["folder_features"] == ["cuda:0"]
    assert set(seen["inception_features"]) == {"cuda:0"}  # the photos' and G(x)'s alike


def test_capped_deterministic_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    """Compared with an uninterrupted deterministic run: the deterministic reflection padding sums its gradient
    in another order than torch's kernel, so its weights differ from a default run's in the last bits."""
    with fake_cuda():
        Trainer(config("cuda", **{"train.deterministic": True}), tmp_path / "straight", progress=False).fit(
            progress=False)
    calls, inside = [], []
    use = torch.use_deterministic_algorithms
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, *, warn_only=False: (
        calls.append((mode, warn_only)), use(mode, warn_only=warn_only)))
    step = CycleGAN.train_step
    monkeypatch.setattr(CycleGAN, "train_step", lambda self, batch: (
        inside.append(torch.are_deterministic_algorithms_enabled()), step(self, batch))[1])
    run = tmp_path / "run"
    with fake_cuda():
        trainer = Trainer(config("cuda", **{"train.max_iterations": 5, "train.deterministic": True}), run,
                          progress=False)
        assert trainer.fit(progress=False)["iterations"] == 5  # stopped mid-epoch 2, after validating epoch 1
        assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch_iter"] == 1
        Trainer(config("cuda", **{"train.deterministic": True}), run, progress=False).fit(progress=False)
    assert calls == [(True, True), (False, False)] * 2  # on for each fit, then back as it was
    assert inside == [True] * 8 and not torch.are_deterministic_algorithms_enabled()
    assert_same_weights(tmp_path / "straight", run)


def test_resume_on_a_machine_with_fewer_gpus_works_and_warns(straight, tmp_path, caplog):
    run = tmp_path / "run"
    with fake_cuda(device_count=2):
        trainer = Trainer(config("cuda:1", **{"train.max_iterations": 5}), run, progress=False)
        assert trainer.method.context.banks.device == "cuda:1"
        assert {p.device for p in trainer.method.G.parameters()} == {torch.device("cuda", 1)}
        trainer.fit(progress=False)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["device"] == "cuda:1"
    with fake_cuda(device_count=1), caplog.at_level(logging.WARNING):
        Trainer(config("cuda:0"), run, progress=False).fit(progress=False)
    assert "was trained on cuda:1 and continues on cuda:0" in caplog.text
    assert "RNG states of 2 CUDA devices, this machine has 1" in caplog.text
    assert_same_weights(straight["dir"], run)


def test_tiled_translation_evaluation_entropies_and_tsne_on_the_device(straight, tmp_path):
    from art2real.metrics.entropy import classification_entropy, detection_entropy, segmentation_entropy
    from art2real.metrics.evaluate import evaluate
    from art2real.metrics.features import tsne_table
    from art2real.segment.kmeans import KMeansSegmenter
    from art2real.semantic import artefacts_dir
    from art2real.translate import load_translator, translate_folder

    paintings, photos = tmp_path / "paintings", tmp_path / "photos"
    for split, folder in (("testA", paintings), ("testB", photos)):
        folder.mkdir()
        for p in sorted((DEMO / split).iterdir())[:3]:
            shutil.copy(p, folder)
    state = load_checkpoint(straight["dir"] / "checkpoints" / "last.pt")
    segmenter = KMeansSegmenter.load(artefacts_dir(config("cpu")) / "segmenter.npz")

    def everything(device: str, out):
        G = load_translator(state, device)
        assert next(G.parameters()).device.type == torch.device(device).type
        written = translate_folder(G, paintings, out, tile=64, progress=False)  # 256 px: 25 tiles an image
        sets = [("painting", "-", paintings), ("photo", "-", photos), ("generated", "Art2Real", out)]
        return {"images": [np.asarray(Image.open(p)) for p in written],
                # FID's 2048-d matrix square root runs on the host from the same features as KID: left out
                "evaluate": evaluate(out, photos, ("kid", "entropy"), size=64, device=device, progress=False),
                "classification": classification_entropy(out, size=64, device=device),
                "segmentation": segmentation_entropy(out, segmenter, size=64, device=device),
                "detection": detection_entropy(out, size=64, device=device),
                "tsne": tsne_table(sets, size=64, device=device)}

    on_cpu = everything("cpu", tmp_path / "cpu")
    with fake_cuda():
        on_cuda = everything("cuda", tmp_path / "cuda")
    assert len(on_cuda["images"]) == 3
    assert all(np.array_equal(a, b) for a, b in zip(on_cpu["images"], on_cuda["images"]))
    for key in ("kid", "kid_std", "classification_entropy"):
        assert on_cuda["evaluate"][key] == on_cpu["evaluate"][key], key
    for key in ("classification", "segmentation", "detection"):
        assert on_cuda[key] == on_cpu[key], key
    assert np.isfinite(on_cuda["segmentation"].value)
    assert on_cuda["tsne"].equals(on_cpu["tsne"]) and len(on_cuda["tsne"]) == 9


def test_the_random_stream_of_the_gpu_a_run_used_continues_on_the_gpu_it_moves_to():
    from art2real.train.checkpoint import rng_state, set_rng_state

    with fake_cuda(device_count=2):
        torch.manual_seed(0)
        torch.randn(5, device="cuda:1")  # the run drew on cuda:1 only: its stream is ahead of cuda:0's
        state = rng_state()
        expected = torch.randn(3, device="cuda:1").cpu()
    with fake_cuda(device_count=1):
        set_rng_state(state, moved=(1, 0))
        assert torch.equal(torch.randn(3, device="cuda:0").cpu(), expected)
        set_rng_state(state)  # without the move, cuda:0 would go on with its own, other, stream
        assert not torch.equal(torch.randn(3, device="cuda:0").cpu(), expected)
