"""Build the embedded demo set ``data/demo/`` from real images that registry packages ship.

Needs (Debian): gcompris-qt-data, opencv-doc, plasma-workspace-wallpapers, lomiri-wallpapers-16.04,
mate-backgrounds; (PyPI): pillow, scikit-learn. Install them with

    apt-get install -y gcompris-qt-data opencv-doc plasma-workspace-wallpapers lomiri-wallpapers-16.04 mate-backgrounds

then run ``python scripts/build_demo_data.py``. The output is deterministic: the same packages give the same files.
A = paintings, B = photos. Wide images give two square crops (left, right); crops of one source image always
land in the same split, so no test image has a sibling in train.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qt_resources import read_rcc  # noqa: E402

SIZE = 256
TEST_EVERY = 5  # every 5th source image goes to the test split
GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc/paintings.rcc")
BOARD_DIR = "/gcompris/src/activities/paintings/resource/board/"
NOT_PHOTOS = {"umang"}  # a rendered colour gradient among the Lomiri photographs
PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "EveningGlow", "FallenLeaf", "OneStandsOut", "Path", "summer_1am", "Volna"]


@dataclass
class Source:
    name: str
    image: Image.Image
    origin: str
    licence: str


def gcompris_paintings() -> list[Source]:
    """Reassemble the jigsaw paintings of GCompris: paste each piece centred at its (x, y) fraction."""
    files = read_rcc(GCOMPRIS_RCC)
    boards = sorted((k for k in files if k.startswith(BOARD_DIR) and k.endswith(".qml")),
                    key=lambda k: int(re.search(r"board(\d+)_", k).group(1)))
    out = []
    for key in boards:
        qml = files[key].decode("utf-8")
        title = re.search(r'qsTr\("(.*?)"\)', qml).group(1)
        width = int(re.search(r'"width"\s*:\s*(\d+)', qml).group(1))
        height = int(re.search(r'"height"\s*:\s*(\d+)', qml).group(1))
        canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        for piece, x, y in re.findall(r'"pixmapfile"\s*:\s*"(image/[^"]+\.webp)",\s*"x"\s*:\s*"([\d.]+)",\s*"y"\s*:\s*"([\d.]+)"', qml):
            tile = Image.open(io.BytesIO(files[key.rsplit("/board/", 1)[0] + "/" + piece])).convert("RGBA")
            cx, cy = float(x) * width, float(y) * height
            canvas.alpha_composite(tile, (round(cx - tile.width / 2), round(cy - tile.height / 2)))
        painting = canvas.crop(canvas.getchannel("A").getbbox()).convert("RGB")
        slug = re.sub(r"[^a-z0-9]+", "_", title.split(",")[0].lower()).strip("_")[:24]
        slug += "_" + re.sub(r"[^a-z0-9]+", "_", title.split(",")[-1].lower()).strip("_")[:24]
        out.append(Source(f"gcompris_{len(out) + 1:02d}_{slug}", painting,
                          f"Debian gcompris-qt-data, {GCOMPRIS_RCC} ({key.rsplit('/', 1)[1]}): {title}",
                          "painting in the public domain; scan GPL-3+ (GCompris)"))
    return out


def other_paintings() -> list[Source]:
    path = Path("/usr/share/doc/opencv-doc/examples/data/starry_night.jpg")
    return [Source("vangogh_starry_night", Image.open(path).convert("RGB"),
                   f"Debian opencv-doc, {path}: Vincent van Gogh, The Starry Night (1889)",
                   "painting in the public domain; file Apache-2.0 AND BSD-3-Clause (OpenCV)")]


def photos() -> list[Source]:
    out = []
    for name in PLASMA_PHOTOS:
        images = sorted(Path(f"/usr/share/wallpapers/{name}/contents/images").glob("*"),
                        key=lambda p: (p.stat().st_size, p.name))
        out.append(Source(f"plasma_{name.lower()}", Image.open(images[-1]).convert("RGB"),
                          f"Debian plasma-workspace-wallpapers, {images[-1]}", "LGPL-3.0 (KDE Plasma wallpapers)"))
    lomiri_licences = _debian_licences("lomiri-wallpapers-16.04")
    for path in sorted(Path("/usr/share/backgrounds").glob("*_by_*.jpg")):
        if path.stem.split("_by_")[0].lower() in NOT_PHOTOS:
            continue
        out.append(Source(f"lomiri_{path.stem.split('_by_')[0].lower()}", Image.open(path).convert("RGB"),
                          f"Debian lomiri-wallpapers-16.04, {path}",
                          lomiri_licences.get(path.name, "see /usr/share/doc/lomiri-wallpapers-16.04/copyright")))
    for path in sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg")):
        out.append(Source(f"mate_{path.stem.lower()}", Image.open(path).convert("RGB"),
                          f"Debian mate-backgrounds, {path}", "GPL-2+ (MATE backgrounds)"))
    from sklearn.datasets import load_sample_image

    out.append(Source("sklearn_china", Image.fromarray(load_sample_image("china.jpg")),
                      "PyPI scikit-learn, sklearn.datasets.load_sample_image('china.jpg')",
                      "CC BY 2.0 (credited in scikit-learn's datasets/images/README.txt)"))
    return out


def _debian_licences(package: str) -> dict[str, str]:
    text = Path(f"/usr/share/doc/{package}/copyright").read_text()
    return {Path(m.group(1)).name: m.group(2).strip()
            for m in re.finditer(r"^Files:\s*(\S+)\n(?:.*\n)*?License:\s*(.+)$", text, re.M)}


def square_crops(image: Image.Image) -> list[tuple[str, Image.Image]]:
    """One centre crop, or left and right crops when the image is wide (aspect > 1.3)."""
    w, h = image.size
    side = min(w, h)
    if w / h > 1.3:
        boxes = [("l", (0, 0, side, side)), ("r", (w - side, 0, w, side))]
    elif h / w > 1.3:
        boxes = [("t", (0, 0, side, side)), ("b", (0, h - side, side, h))]
    else:
        boxes = [("", ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))]
    return [(tag, image.crop(box).resize((SIZE, SIZE), Image.Resampling.LANCZOS)) for tag, box in boxes]


def write(sources: list[Source], domain: str, out: Path, records: list[dict]) -> None:
    for i, source in enumerate(sources):
        split = "test" if i % TEST_EVERY == TEST_EVERY - 1 else "train"
        for tag, crop in square_crops(source.image):
            name = f"{source.name}{'_' + tag if tag else ''}.jpg"
            folder = out / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            crop.save(folder / name, quality=90, optimize=True)
            records.append({"file": f"{split}{domain}/{name}", "origin": source.origin, "licence": source.licence})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "demo")
    args = parser.parse_args()
    for split in ("trainA", "trainB", "testA", "testB"):
        shutil.rmtree(args.out / split, ignore_errors=True)
    records: list[dict] = []
    write(gcompris_paintings() + other_paintings(), "A", args.out, records)
    write(photos(), "B", args.out, records)
    (args.out / "sources.json").write_text(json.dumps(records, indent=1) + "\n")
    lines = ["# Demo data: sources and licences", "",
             "Built by `python scripts/build_demo_data.py` from files that Debian and PyPI packages ship. "
             f"Every image is a {SIZE}x{SIZE} crop; A = paintings, B = photos.", "",
             "| file | origin | licence |", "|---|---|---|"]
    lines += [f"| {r['file']} | {r['origin']} | {r['licence']} |" for r in records]
    (args.out / "SOURCES.md").write_text("\n".join(lines) + "\n")
    counts = {s: len(list((args.out / s).glob("*.jpg"))) for s in ("trainA", "testA", "trainB", "testB")}
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
