"""The stages behind the notebooks (00 -> 07), so notebooks stay thin and the CLI can run the same chain.

Every stage writes under ``results/<artist>/``: numbers as CSV/JSON, figures as PNG, tables as Markdown with the
paper's values beside ours and a status column (reproduced / not available (why) / not reproduced).
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import report
from .config import Config, get_config, pick_device
from .data.download import DownloadError, download
from .data.images import load_rgb, scan_images
from .data.registry import SPLITS, get_setting, missing_splits
from .io import write_json, write_text
from .paths import repo_root, results_dir

log = logging.getLogger(__name__)
METHODS = {"art2real": "Art2Real", "cyclegan": "Cycle-GAN"}
NOTEBOOKS = ["00_data", "01_memory_banks", "02_train", "03_translate", "04_fid_table", "05_entropy", "06_tsne",
             "07_qualitative"]


def out_dir(artist: str, *parts: str) -> Path:
    name = get_setting(artist).artist.lower().replace(" ", "").replace("-", "")  # monet, vangogh, ukiyoe, demo
    path = results_dir().joinpath(name, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage_config(artist: str, preset: str, method: str = "art2real", seed: int = 0, **overrides) -> Config:
    """The run config of a stage; a wrong artist, preset or method stops here, before any compute."""
    setting = get_setting(artist)
    values = {"data.dataset": setting.name, **{k.replace("__", "."): v for k, v in overrides.items()
                                                 if v is not None}}
    return get_config(preset, values, method=method, seed=seed)


# ---------------------------------------------------------------------------------------------------- 00
def ensure_data(artist: str, allow_download: bool = True) -> Path:
    """The setting's folder; downloaded when missing and online, else a message naming what to fetch."""
    setting = get_setting(artist)
    root = setting.path()
    if not missing_splits(root):
        return root
    if not allow_download:
        raise FileNotFoundError(f"{root} is missing {', '.join(missing_splits(root))}: run "
                                f"`art2real data download {setting.name}`")
    try:
        return download(setting.name)
    except DownloadError as e:
        raise DownloadError(f"dataset {setting.name!r} is not available offline. {e}") from None


def data_stage(artist: str) -> dict:
    root = ensure_data(artist)
    reports = {split: scan_images(root / split) for split in SPLITS}
    summary = {"dataset": get_setting(artist).name, "root": str(root),
               "splits": {s: {"images": len(r.good), "unreadable": [str(p) for p, _ in r.bad]}
                          for s, r in reports.items()}}
    write_json(out_dir(artist) / "data.json", summary)
    for r in reports.values():
        print(r.summary())
    return summary


# ---------------------------------------------------------------------------------------------------- 01
def banks_stage(cfg: Config, artist: str) -> dict:
    from .model import artefacts_dir, painting_masks, prepare_banks
    from .segment.masks import palette, segment_folder

    banks, segmenter = prepare_banks(cfg)
    masks = {split: painting_masks(cfg, segmenter, split) for split in ("trainA", "testA")}
    rows = [{"scale": f"{p}/{s}", "class": "background" if c == "-1" else segmenter.class_names[int(c)],
             "patches": n} for (p, s) in banks.scales for c, n in banks.meta["counts"][f"s{p}_{s}"].items()]
    table = pd.DataFrame(rows)
    table.to_csv(out_dir(artist) / "bank_statistics.csv", index=False)
    figures = out_dir(artist, "figures")
    _overlay_sheet(artefacts_dir(cfg) / "masks" / "testA" / "overlays", figures / "masks_paintings.png")
    photos_dir = artefacts_dir(cfg) / "masks" / "testB"
    segment_folder(segmenter, get_setting(artist).path() / "testB", photos_dir, cfg.data.image_size,
                   device=pick_device(cfg.device))
    _overlay_sheet(photos_dir / "overlays", figures / "masks_photos.png")
    _bank_chart(table, palette(len(segmenter.class_names) + 1), figures / "bank_statistics.png")
    print(banks.summary())
    return {"banks": str(banks.root), "masks": {k: len(v) for k, v in masks.items()},
            "segmenter": segmenter.name, "statistics": table}


def _pyplot():
    """pyplot on a file backend: stages write figures to PNG, also without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _overlay_sheet(folder: Path, target: Path, n: int = 8) -> None:
    from PIL import Image

    files = sorted(folder.glob("*.jpg"))[:n]
    if not files:
        return
    tiles = [Image.open(f) for f in files]
    w, h = tiles[0].size
    sheet = Image.new("RGB", (w * 2, h * ((len(tiles) + 1) // 2)), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t.resize((w, h)), ((i % 2) * w, (i // 2) * h))
    sheet.save(target)


def _bank_chart(table: pd.DataFrame, colours, target: Path) -> None:
    plt = _pyplot()

    pivot = table.pivot(index="scale", columns="class", values="patches").fillna(0)
    ax = pivot.plot.bar(stacked=True, figsize=(7, 4), color=[tuple(c / 255) for c in colours[:pivot.shape[1]]])
    ax.set_ylabel("patches in the memory banks")
    ax.set_title("Memory banks per scale and class")
    plt.tight_layout()
    plt.savefig(target, dpi=100)
    plt.close()


# ---------------------------------------------------------------------------------------------------- 02
def run_dir(artist: str, method: str, preset: str) -> Path:
    return out_dir(artist, "runs") / f"{method}_{preset}"


def train_stage(cfg: Config, artist: str) -> dict:
    from .model import build_trainer

    target = run_dir(artist, cfg.method, cfg.preset)
    summary = build_trainer(cfg, target).fit()
    _loss_curves(target)
    return summary


def _loss_curves(run: Path) -> None:
    plt = _pyplot()

    losses = pd.read_csv(run / "losses.csv")
    cols = [c for c in ("G_gan", "cycle_X", "idt_X", "cx", "D_Y") if c in losses and losses[c].notna().any()]
    window = max(1, len(losses) // 50)
    ax = losses[cols].rolling(window, min_periods=1).mean().set_index(losses["iteration"]).plot(figsize=(7, 4))
    ax.set_xlabel("iteration")
    ax.set_title(f"training losses ({run.name}, moving average of {window})")
    plt.tight_layout()
    plt.savefig(run / "losses.png", dpi=100)
    plt.close()


# ---------------------------------------------------------------------------------------------------- 03
def translate_stage(cfg: Config, artist: str, releases: bool = True) -> dict:
    """Translate the test paintings with every model at hand: runs trained here, and released generators."""
    from .pretrained import load_release, releases_for
    from .translate import load_generator, translate_folder

    device = pick_device(cfg.device)
    paintings = get_setting(artist).path() / "testA"
    status = {}
    for method in METHODS:
        checkpoint = run_dir(artist, method, cfg.preset) / "checkpoints" / "last.pt"
        if not checkpoint.exists():
            status[method] = f"not available: no {method} run at {checkpoint.parent.parent} (run 02_train)"
            continue
        folder = out_dir(artist, "translations", method)
        translate_folder(load_generator(checkpoint, device), paintings, folder, cfg.data.image_size)
        status[method] = str(folder)
    for release in releases_for(get_setting(artist).name) if releases else []:
        try:
            G = load_release(release.name, device, retries=0)
        except (DownloadError, OSError, ValueError) as e:
            status[release.name] = f"not available: {str(e).splitlines()[0][:300]}"
            continue
        folder = out_dir(artist, "translations", release.name)
        translate_folder(G, paintings, folder, cfg.data.image_size)
        status[release.name] = str(folder)
    write_json(out_dir(artist) / "translations.json", status)
    return status


def translations(artist: str) -> dict[str, str]:
    path = out_dir(artist) / "translations.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _available(status: dict) -> dict[str, Path]:
    return {k: Path(v) for k, v in status.items() if not v.startswith("not available")}


def _row_name(key: str) -> str:
    from .pretrained import RELEASES

    return METHODS.get(key) or (RELEASES[key].method if key in RELEASES else key)


# ---------------------------------------------------------------------------------------------------- 04
def fid_stage(cfg: Config, artist: str) -> pd.DataFrame:
    """Table 1: FID (and KID, for small sets) of each image set against the setting's real photos, at the
    model resolution."""
    from .metrics.fid import FID_MIN_IMAGES, fid, kid
    from .metrics.inception import cached_features

    setting = get_setting(artist)
    size = cfg.data.image_size
    device = pick_device(cfg.device)
    reference = cached_features(setting.path() / "trainB", device, size=size)
    column = setting.artist
    sets = {"Original paintings": setting.path() / "testA"}
    status = translations(artist)
    sets.update({f"{_row_name(k)} ({k})" if k not in METHODS else _row_name(k): v
                 for k, v in _available(status).items()})
    rows = []
    for name, folder in sets.items():
        feats = cached_features(folder, device, size=size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fid(feats, reference)
        k_mean, k_std = kid(feats, reference, seed=cfg.seed)
        paper_key = name.split(" (")[0]
        rows.append({"method": name, "paper_fid": report.PAPER_FID.get(paper_key, {}).get(column),
                     "fid": value, "kid_x1000": 1000 * k_mean, "kid_std_x1000": 1000 * k_std,
                     "images": len(feats), "reference_photos": len(reference),
                     "status": "reproduced" + (f" (FID on < {FID_MIN_IMAGES} images: biased upwards)"
                                               if len(feats) < FID_MIN_IMAGES else "")})
    for key, value in status.items():
        if value.startswith("not available"):
            rows.append({"method": _row_name(key), "status": value})
    for name in ("Style-transferred reals (Gatys)", "DRIT", "UNIT"):
        rows.append({"method": name, "paper_fid": report.PAPER_FID[name].get(column),
                     "status": "not reproduced: method not implemented in this kit (paper value shown)"})
    table = pd.DataFrame(rows).astype({"images": "Int64", "reference_photos": "Int64"})
    _write_table(artist, "table1_fid", table, f"Table 1: FID, {column} ({setting.name}), {size} px, "
                 f"reference: {len(reference)} real photos (trainB); lower is better")
    return table


# ---------------------------------------------------------------------------------------------------- 05
def entropy_stage(cfg: Config, artist: str, classifier: str = "auto") -> pd.DataFrame:
    """Table 3: mean entropy of a classifier, the segmenter and a detector on each image set."""
    from .metrics.entropy import classification_entropy, detection_entropy, segmentation_entropy
    from .model import fit_segmenter

    setting = get_setting(artist)
    size, device = cfg.data.image_size, pick_device(cfg.device)
    segmenter = fit_segmenter(cfg)
    sets = {"Real photos": setting.path() / "testB", "Original paintings": setting.path() / "testA"}
    sets.update({_row_name(k): v for k, v in _available(translations(artist)).items()})
    rows = []
    for name, folder in sets.items():
        results = (classification_entropy(folder, classifier, size, device=device),
                   segmentation_entropy(folder, segmenter, size, device=device),
                   detection_entropy(folder, size, device=device))
        row = {"method": name}
        for col, result, paper in zip(report.ENTROPY_COLUMNS, results, report.PAPER_ENTROPY.get(name, (None,) * 3)):
            row[f"paper_{col}"] = paper
            row[col] = result.get("mean")
            row[f"{col}_model"] = result.get("model") or result.get("status")
        row["status"] = "; ".join(f"{c}: {r['status']}" for c, r in zip(report.ENTROPY_COLUMNS, results)
                                  if "status" in r) or "reproduced"
        rows.append(row)
    for name in ("Style-transferred reals", "DRIT", "UNIT"):
        rows.append({"method": name, **{f"paper_{c}": v for c, v in zip(report.ENTROPY_COLUMNS,
                                                                         report.PAPER_ENTROPY[name])},
                     "status": "not reproduced: method not implemented in this kit (paper value shown)"})
    table = pd.DataFrame(rows)
    _write_table(artist, "table3_entropy", table, f"Table 3: mean entropy (nats), {setting.name}, {size} px; "
                 "lower = more confident. Paper: ResNet-152 / its segmenter / Faster R-CNN (Visual Genome)")
    return table


# ---------------------------------------------------------------------------------------------------- 06
def tsne_stage(cfg: Config, artist: str, classifier: str = "auto") -> pd.DataFrame:
    """Figure 4: t-SNE of CNN features of paintings, generated images and real photos, one panel per method."""
    plt = _pyplot()

    from .metrics.features import tsne_table

    setting = get_setting(artist)
    methods = _available(translations(artist))
    sets = [("painting", "-", setting.path() / "testA"), ("photo", "-", setting.path() / "testB")]
    sets += [("generated", _row_name(k), v) for k, v in methods.items()]
    table = tsne_table(sets, classifier, cfg.seed, cfg.data.image_size, pick_device(cfg.device))
    table.to_csv(out_dir(artist) / "figure4_tsne.csv", index=False)
    panels = sorted(set(table["method"]) - {"-"}) or ["-"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    colours = {"painting": "tab:orange", "photo": "tab:green", "generated": "tab:blue"}
    for ax, method in zip(axes[0], panels):
        part = table[(table["method"] == "-") | (table["method"] == method)]
        for domain, group in part.groupby("domain"):
            ax.scatter(group["x"], group["y"], s=14, c=colours[domain], label=domain, alpha=0.8)
        ax.set_title(method if method != "-" else "paintings and photos")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8)
    fig.suptitle(f"t-SNE of {table['model'].iloc[0].split(' (')[0]} features ({setting.name})")
    plt.tight_layout()
    plt.savefig(out_dir(artist, "figures") / "figure4_tsne.png", dpi=100)
    plt.close()
    return table


# ---------------------------------------------------------------------------------------------------- 07
def qualitative_stage(cfg: Config, artist: str, n: int = 6) -> Path:
    """Figures 5-6: painting | Art2Real | Cycle-GAN | released models, one row per test painting."""
    from PIL import Image, ImageDraw

    setting = get_setting(artist)
    methods = _available(translations(artist))
    paintings = scan_images(setting.path() / "testA").good[:n]
    size = cfg.data.image_size
    columns = [("painting", None)] + [(_row_name(k), v) for k, v in methods.items()]
    sheet = Image.new("RGB", (size * len(columns), 18 + size * len(paintings)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, (title, _) in enumerate(columns):
        draw.text((c * size + 4, 3), title, fill="black")
    for r, path in enumerate(paintings):
        for c, (title, folder) in enumerate(columns):
            image = load_rgb(path) if folder is None else load_rgb(folder / f"{path.stem}.png")
            sheet.paste(image.resize((size, size), Image.Resampling.BICUBIC), (c * size, 18 + r * size))
    target = out_dir(artist, "figures") / "figure5_qualitative.png"
    sheet.save(target)
    return target


# ---------------------------------------------------------------------------------------------------- tables
def _write_table(artist: str, name: str, table: pd.DataFrame, title: str) -> None:
    table.to_csv(out_dir(artist) / f"{name}.csv", index=False)
    shown = [c for c in table.columns if not c.endswith("_model") or c == "classification_model"]
    cells = [[None if pd.isna(v) else v for v in row] for row in table[shown].astype(object).values.tolist()]
    notes: list[str] = []

    def footnote(match: re.Match) -> str:  # long reasons once, under the table (the CSV keeps them inline)
        if match.group(1) not in notes:
            notes.append(match.group(1))
        return f"not available [{notes.index(match.group(1)) + 1}]"

    # a reason runs to the next "; <column>: " of a joined status, so reasons may hold semicolons themselves
    cells = [[re.sub(r"not available: (.+?)(?=; \w+: |$)", footnote, c) if isinstance(c, str) else c for c in row]
             for row in cells]
    md = f"## {title}\n\n" + report.markdown_table(shown, cells) + "\n"
    md += "".join(f"\n[{i}] not available: {n}" for i, n in enumerate(notes, 1)) + ("\n" if notes else "")
    write_text(out_dir(artist) / f"{name}.md", md)
    write_summary(artist)


def write_summary(artist: str) -> Path:
    """results/<artist>/README.md: every table and figure the chain produced."""
    base = out_dir(artist)
    parts = [f"# Results: {get_setting(artist).name}", "",
             "Written by the notebooks (`make demo` / `make paper ARTIST=...`). Numbers are ours unless a "
             "column says paper; rows the kit does not implement show the paper's value only.", ""]
    for name in ("table1_fid", "table3_entropy"):
        if (base / f"{name}.md").exists():
            parts += [(base / f"{name}.md").read_text(), ""]
    figures = sorted((base / "figures").glob("*.png")) if (base / "figures").exists() else []
    runs = sorted((base / "runs").glob("*/samples")) if (base / "runs").exists() else []
    if figures or runs:
        parts.append("## Figures\n")
        parts += [f"- [{f.stem}](figures/{f.name})\n\n  ![{f.stem}](figures/{f.name})" for f in figures]
        for samples in runs:
            last = sorted(samples.glob("*.png"))[-1:]
            parts += [f"- training samples {samples.parent.name} (painting | G(x) | F(G(x))): "
                      f"[{p.name}](runs/{samples.parent.name}/samples/{p.name})" for p in last]
    target = base / "README.md"
    write_text(target, "\n".join(parts) + "\n")
    return target


# ---------------------------------------------------------------------------------------------------- chain
def run_chain(artist: str, preset: str = "auto", seed: int = 0, from_notebook: str = "00", epochs: int = 0) -> Path:
    """Execute notebooks 00 -> 07 with papermill; executed copies go to results/<artist>/notebooks/.
    ``epochs`` > 0 overrides the preset's epoch count of both trainings (02_train)."""
    import papermill as pm

    stage_config(artist, preset)  # fail fast on a wrong artist or preset
    preset = get_config(preset).preset if preset == "auto" else preset
    nb_dir = repo_root() / "notebooks"
    target = out_dir(artist, "notebooks")
    for name in NOTEBOOKS:
        if name[:2] < from_notebook[:2]:
            continue
        runs = [{"method": m, "epochs": epochs} for m in ("art2real", "cyclegan")] if name == "02_train" else [{}]
        for params in runs:
            parameters = {"artist": artist, "preset": preset, "seed": seed, **params}
            suffix = f"_{params['method']}" if params else ""
            log.info("running %s%s", name, suffix)
            pm.execute_notebook(str(nb_dir / f"{name}.ipynb"), str(target / f"{name}{suffix}.ipynb"),
                                parameters=parameters, cwd=str(repo_root()), progress_bar=False)
    summary = write_summary(artist)
    print(f"summary: {summary}")
    return summary
