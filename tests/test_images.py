"""Robust image loading on a folder of awkward files."""
import numpy as np
import pytest
from PIL import Image

from art2real.data.dataset import ImageFolder, UnpairedDataset
from art2real.data.images import UnreadableImage, load_rgb, scan_images

from .conftest import DEMO


@pytest.fixture
def awkward(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((20, 30), 128, np.uint8), "L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half, opaque on the right
    rgba[:, 15:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((20, 30), 65535, np.uint16)).save(tmp_path / "sixteen.png")
    # EXIF orientation 6 = rotate 90 degrees: a 30x20 image displays as 20x30
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
    full = (tmp_path / "rgb.png").read_bytes()
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    big.save(tmp_path / "whole.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])
    (tmp_path / "notimage.png").write_text("this is not a png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "README.txt").write_text("ignored: no image extension")
    (tmp_path / "half.png").write_bytes(full[: len(full) // 2])
    return tmp_path


def test_conversions(awkward):
    assert load_rgb(awkward / "gray.png").getpixel((0, 0)) == (128, 128, 128)
    assert load_rgb(awkward / "palette.png").getpixel((0, 0)) == (255, 0, 0)
    rgba = load_rgb(awkward / "rgba.png")
    assert rgba.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    assert rgba.getpixel((20, 0)) == (255, 0, 0)
    assert load_rgb(awkward / "cmyk.jpg").mode == "RGB"
    assert load_rgb(awkward / "sixteen.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb(awkward / "rotated.jpg").size == (20, 30)
    for name in ("truncated.jpg", "notimage.png", "empty.jpg", "half.png"):
        with pytest.raises(UnreadableImage):
            load_rgb(awkward / name)


def test_scan_reports_bad_files(awkward):
    with pytest.warns(UserWarning, match="4 unreadable"):
        report = scan_images(awkward, min_size=32)
    assert {p.name for p, _ in report.bad} == {"truncated.jpg", "notimage.png", "empty.jpg", "half.png"}
    assert len(report.good) == 8
    assert [p.name for p in report.ignored] == ["README.txt"]
    assert len(report.smaller_than) == 7  # every good image but whole.jpg (64 px)
    assert "UNREADABLE truncated.jpg" in report.summary()


def test_dataset_skips_unreadable_and_files_that_break_later(awkward):
    with pytest.warns(UserWarning):
        folder = ImageFolder(awkward, size=16)
    assert len(folder) == 8
    assert folder[0].shape == (3, 16, 16) and -1 <= folder[0].min() and folder[0].max() <= 1
    (awkward / folder.paths[0].name).write_bytes(b"broken after the scan")
    with pytest.warns(UserWarning, match="skipping unreadable"):
        item = folder[0]  # replaced by the next readable image, not a crash
    assert item.shape == (3, 16, 16)
    assert str(folder.paths[0]) in folder.skipped


def test_demo_data_is_clean_and_large_enough():
    counts = {}
    for split in ("trainA", "trainB", "testA", "testB"):
        report = scan_images(DEMO / split)
        assert report.ok, report.summary()
        counts[split] = len(report.good)
    assert counts["trainA"] + counts["testA"] >= 20 and counts["trainB"] + counts["testB"] >= 40
    assert all(counts.values())
    listed = (DEMO / "SOURCES.md").read_text()
    for split in counts:
        for path in (DEMO / split).iterdir():
            assert f"{split}/{path.name}" in listed, f"{path} has no entry in SOURCES.md"


def test_unpaired_epochs_are_replayable(tiny_dataset):
    ds = UnpairedDataset(tiny_dataset, size=32, crop_margin=8, flip=True, seed=3)
    assert len(ds) == 5
    a, b = ds.item(2, 3), ds.item(2, 3)
    assert a["A"].equal(b["A"]) and a["B"].equal(b["B"])  # same (seed, epoch, position) -> same item
    assert a["A"].shape == (3, 32, 32)
    assert not (ds.plan(0) == ds.plan(1)).all()  # photos are redrawn each epoch
    # paintings shuffled each epoch (CycleGAN's loader), every one once, one repeated to fill max(|A|, |B|)
    for epoch in range(3):
        assert sorted(set(ds.plan(epoch)[:, 0])) == [0, 1, 2, 3]
    assert len({tuple(ds.plan(e)[:, 0]) for e in range(6)}) > 1
    assert (UnpairedDataset(tiny_dataset, 32, seed=3).plan(4) == ds.plan(4)).all()  # a function of (seed, epoch)
