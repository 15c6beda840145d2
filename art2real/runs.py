"""One layout for every run and result, used by the CLI, the notebooks, the chain, translate and evaluate.

    results/<setting>/                       one folder per setting (monet, landscapes, demo, ...)
      runs/<method>/<preset>-seed<seed>/     one training run
        config.yaml  losses.csv  samples/  checkpoints/{last,previous,best}.pt  train.lock
        translations/<split>/                its translations of the test paintings
      releases/<release>/translations/<split>/   released generators' translations
      table1_fid.{csv,md}  table3_entropy.{csv,md}  figures/  notebooks/  README.md

A setting is a registry name (``data/<name>``) or any folder with trainA/trainB/testA/testB; a folder is keyed
by its resolved path, so two folders that share a name never share runs or caches.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .data.images import file_stamp
from .data.registry import ARTISTS, DATASETS, dataset_root
from .paths import results_dir


def setting_key(dataset: str | Path) -> str:
    """The results folder name of a setting: the notebooks' artist name for the paper's settings (monet,
    vangogh, demo), the registry name for other registered ones, else the folder's name plus a hash of its
    resolved path."""
    root = dataset_root(dataset).resolve()
    artists = {v: k for k, v in ARTISTS.items()}
    for setting in DATASETS.values():
        if setting.path().resolve() == root:
            return artists.get(setting.name, setting.name)
    return f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def setting_dir(dataset: str | Path) -> Path:
    return results_dir() / setting_key(dataset)


@dataclass(frozen=True)
class Run:
    """A training run: (setting, method, preset, seed) -> its folder."""

    dataset: str
    method: str
    preset: str
    seed: int = 0

    @classmethod
    def of(cls, cfg) -> "Run":
        return cls(cfg.data.dataset, cfg.method, cfg.preset, cfg.seed)

    @property
    def dir(self) -> Path:
        return setting_dir(self.dataset) / "runs" / self.method / f"{self.preset}-seed{self.seed}"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    def translations(self, split: str = "testA") -> Path:
        return self.dir / "translations" / split

    def best_checkpoint(self) -> Path | None:
        """The generator to evaluate: ``best.pt`` (validation) when there is one, else ``last.pt``."""
        for name in ("best.pt", "last.pt"):
            if (self.checkpoints / name).exists():
                return self.checkpoints / name
        return None

    def translation_stamp(self) -> list | None:
        """What its translations must come from: the best checkpoint's name and file stamp (None: untrained)."""
        checkpoint = self.best_checkpoint()
        return None if checkpoint is None else [checkpoint.name, *file_stamp(checkpoint)]

    def translations_current(self, split: str = "testA") -> bool:
        """Whether ``translations/<split>`` was made from the current best checkpoint (``source.json``'s stamp)."""
        meta, stamp = self.translations(split) / "source.json", self.translation_stamp()
        return stamp is not None and meta.exists() and json.loads(meta.read_text()).get("stamp") == stamp

    def exists(self) -> bool:
        """A trained run, or the produced images of a method without training."""
        return self.best_checkpoint() is not None or (self.translations() / "source.json").exists()


def release_translations(dataset: str | Path, release: str, split: str = "testA") -> Path:
    return setting_dir(dataset) / "releases" / release / "translations" / split


def runs_of(dataset: str | Path, preset: str | None = None) -> list[Run]:
    """The runs on disk for a setting (optionally one preset), in registry order then seed."""
    from . import methods

    found = []
    base = setting_dir(dataset) / "runs"
    for method in methods.names():
        for folder in sorted((base / method).glob("*-seed*")) if (base / method).is_dir() else []:
            name, _, seed = folder.name.rpartition("-seed")
            if seed.isdigit() and (preset is None or name == preset):
                run = Run(str(dataset), method, name, int(seed))
                if run.exists():
                    found.append(run)
    return found
