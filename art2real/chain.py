"""The stages behind the notebooks (00 -> 08), and the chain that runs the notebooks with papermill.

A stage computes and returns objects (DataFrames, Figures, summaries); a notebook shows them and saves them under
``results/<setting>/`` with :func:`save_table` / :func:`save_figure`; the CLI runs the same functions. Notebook
parameters are checked here, before any compute, with messages that name the parameter and its allowed values.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from . import errors, figures, methods, report, tables
from .config import PRESETS, Config, get_config, pick_device
from .data.download import DownloadError, download
from .data.images import scan_images
from .data.registry import ARTISTS, SPLITS, dataset_root, get_setting, missing_splits
from .errors import CheckpointError, ConfigError, DataError, UserError
from .io import write_json, write_text
from .outcomes import NotAvailable
from .paths import repo_root
from .runs import Run, release_translations, runs_of, setting_dir

# the kit's user errors by name: a notebook that raised one failed for a reason the user can fix
USER_ERRORS = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, UserError)}

log = logging.getLogger(__name__)
NOTEBOOKS = ["00_data", "01_memory_banks", "02_train", "03_translate", "04_fid_table", "05_entropy", "06_tsne",
             "07_qualitative", "08_user_study"]


# ---------------------------------------------------------------------------------------------------- parameters
def notebook_setup() -> None:
    """In a notebook: log lines and warnings on stdout (JupyterLab shows stderr as red error boxes), figures
    inline."""

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)  # libraries' info lines (faiss's loader...) stay out
    logging.getLogger("art2real").setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")


def parse_seeds(seeds: str | int) -> list[int] | None:
    """A notebook's ``seeds`` parameter: "all" (every run found) or "0,1,2"."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return [seeds]
    if seeds == "all":
        return None
    try:
        return [int(s) for s in str(seeds).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"parameter seeds must be 'all' or a comma-separated list like '0,1,2'; got {seeds!r}") \
            from None


def stage_config(artist: str, preset: str = "auto", method: str = "art2real", seed: int = 0, epochs: int = 0,
                 **overrides) -> Config:
    """The config of a notebook's parameters; a wrong value stops here, before any compute. ``epochs`` > 0
    replaces the preset's epoch count (half constant, half decay)."""
    for name, value, kind in (("artist", artist, str), ("preset", preset, str), ("method", method, str),
                              ("seed", seed, int), ("epochs", epochs, int)):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"parameter {name} must be {'an int' if kind is int else 'a string'}, got {value!r}")
    if preset not in PRESETS:
        raise ConfigError(f"parameter preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if seed < 0 or epochs < 0:
        raise ConfigError(f"parameters seed and epochs must be >= 0, got seed={seed}, epochs={epochs}")
    try:
        dataset_root(artist)
    except ConfigError as e:
        raise ConfigError(f"parameter artist: {e}") from None
    values = {"data.dataset": get_setting(artist).name if artist.lower() in ARTISTS else artist,
              **{k.replace("__", "."): v for k, v in overrides.items() if v is not None}}
    if epochs:
        values.update({"train.epochs_constant": (epochs + 1) // 2, "train.epochs_decay": epochs // 2})
    return get_config(preset, values, method=method, seed=seed)


def results(cfg: Config, *parts: str) -> Path:
    """``results/<setting>/<parts>``, created."""
    path = setting_dir(cfg.data.dataset).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_table(cfg: Config, table: pd.DataFrame, name: str) -> Path:
    csv, md = report.save_table(table, results(cfg), name)
    write_summary(cfg)
    return md


def save_figure(cfg: Config, fig: Figure, name: str) -> Path:
    path = results(cfg, "figures") / f"{name}.png"
    fig.savefig(path, dpi=110)
    write_summary(cfg)
    return path


# ---------------------------------------------------------------------------------------------------- 00
def ensure_data(cfg: Config, allow_download: bool = True) -> Path:
    """The setting's folder; downloaded when missing and online, else a message naming what to fetch."""
    root = dataset_root(cfg.data.dataset)
    if not missing_splits(root):
        return root
    try:
        setting = get_setting(str(cfg.data.dataset))
    except ConfigError:
        raise DataError(f"{root} is missing {', '.join(missing_splits(root))} (A = paintings, B = photos)") from None
    if not allow_download:
        raise DataError(f"{root} is missing {', '.join(missing_splits(root))}: run "
                        f"`art2real data download {setting.name}`")
    try:
        return download(setting.name)
    except DownloadError as e:
        raise DownloadError(f"dataset {setting.name!r} is not available offline. {e}") from None


def data_table(cfg: Config) -> pd.DataFrame:
    """Per split: readable images, unreadable ones (named), images under half the model size, other files."""
    root = ensure_data(cfg)
    rows = []
    for split in SPLITS:
        r = scan_images(root / split, min_size=cfg.data.image_size)
        rows.append({"split": split, "role": "paintings" if split.endswith("A") else "photos",
                     "images": len(r.good), "unreadable": len(r.bad), "under half size": len(r.tiny),
                     "other files": len(r.ignored),
                     "problems": "; ".join([f"{p.name}: {why}" for p, why in r.bad]
                                           + [f"{p.name}: {w}x{h} px" for p, (w, h) in r.tiny.items()])})
    table = pd.DataFrame(rows)
    table.attrs["title"] = f"Data: {cfg.data.dataset} ({root})"
    return table


def data_figures(cfg: Config, n: int = 6) -> list[Figure]:
    root = ensure_data(cfg)
    return [figures.thumbnails(scan_images(root / split).good[:n], f"{split}: {role}")
            for split, role in (("trainA", "paintings"), ("trainB", "photos"))]


# ---------------------------------------------------------------------------------------------------- 01
@dataclass
class BanksResult:
    banks: object
    segmenter: object
    statistics: pd.DataFrame
    masks: dict[str, Path]  # split -> folder of label PNGs and overlays


def banks_stage(cfg: Config) -> BanksResult:
    """Fit the segmenter, build the memory banks, segment the paintings (train and test) and the test photos."""
    from .semantic import masks_dir, painting_masks, prepare_banks

    banks, segmenter = prepare_banks(cfg)
    for split in ("trainA", "testA", "testB"):
        painting_masks(cfg, segmenter, split)
    names = segmenter.class_names
    rows = [{"scale": f"{p}/{s}", "class": "background" if c == "-1" else names[int(c)], "patches": n}
            for (p, s) in banks.scales for c, n in banks.meta["counts"][f"s{p}_{s}"].items()]
    stats = pd.DataFrame(rows)
    stats.attrs["title"] = f"Memory banks ({segmenter.name})"
    return BanksResult(banks, segmenter, stats, {s: masks_dir(cfg, s) for s in ("trainA", "testA", "testB")})


def banks_figures(cfg: Config, result: BanksResult, n: int = 6) -> dict[str, Figure]:
    """Mask overlays of test paintings and photos, the bank chart, and real neighbours of painting patches."""
    figs = {f"masks_{kind}": figures.mask_overlays(sorted((result.masks[split] / "overlays").glob("*.jpg"))[:n],
                                                   f"{result.segmenter.name}: test {kind}")
            for split, kind in (("testA", "paintings"), ("testB", "photos"))}
    figs["bank_statistics"] = figures.bank_chart(result.statistics, result.segmenter.class_names)
    figs["bank_neighbours"] = neighbours_figure(cfg, result)
    return figs


def neighbours_figure(cfg: Config, result: BanksResult, n: int = 5, k: int = 5) -> Figure:
    """Patches of a test painting (largest scale), one per class present, and their k nearest real patches
    from the bank of that class: what the contextual loss pulls a generated patch towards."""
    import numpy as np
    import torch

    from .bank.patches import class_fractions, extract_patches, patch_assignment, to_u8
    from .data.dataset import ImageFolder
    from .segment.base import BACKGROUND

    painting = ImageFolder(dataset_root(cfg.data.dataset) / "testA", cfg.data.image_size, 1)[0][None]
    labels = result.segmenter.labels(painting)
    scale = len(result.banks.scales) - 1
    size, stride = result.banks.scales[scale]
    patches = extract_patches(painting, size, stride)[0]
    member = patch_assignment(class_fractions(labels, len(result.segmenter.class_names), size, stride)[0])
    keys = list(range(len(result.segmenter.class_names))) + [BACKGROUND]
    rng = np.random.default_rng(cfg.seed)
    queries, found, titles = [], [], []
    for col in torch.nonzero(member.any(0)).flatten().tolist()[:n]:
        bank = result.banks.resolve(scale, keys[col])
        if bank is None:
            continue
        row = int(rng.choice(torch.nonzero(member[:, col]).flatten().numpy()))
        ids = result.banks.search(scale, bank, patches[row:row + 1].numpy(), k)[0]
        queries.append(to_u8(patches[row]).numpy())
        found.append(result.banks.banks[scale][bank].patches[np.where(ids >= 0, ids, 0)])
        titles.append("background" if bank == BACKGROUND else result.segmenter.class_names[bank])
    return figures.neighbours(np.stack(queries), np.stack(found), size, titles)


# ---------------------------------------------------------------------------------------------------- 02
def train_stage(cfg: Config, resume: bool = True, force: bool = False, on_epoch=None, progress: bool = True) -> dict:
    from .train.trainer import Trainer

    return Trainer(cfg, progress=progress).fit(resume=resume, force=force, on_epoch=on_epoch, progress=progress)


def loss_figure(run: Run) -> Figure:
    return figures.loss_curves(pd.read_csv(run.dir / "losses.csv"), f"{run.method}, {run.preset}, seed {run.seed}")


# ---------------------------------------------------------------------------------------------------- 03
def translate_stage(cfg: Config, seeds: list[int] | None = None, releases: bool = True,
                    split: str = "testA", overrides: dict | None = None) -> pd.DataFrame:
    """Translate a split's paintings with every run of the preset (its best generator: ``best.pt`` when it was
    validated, else ``last.pt``) and with the setting's released generators, and make the images of methods
    without training (with ``overrides``, ``stage_config`` keywords, on top of their preset); returns what was
    translated."""
    from .pretrained import load_release, releases_for
    from .translate import load_translator, translate_folder
    from .train.checkpoint import load_checkpoint

    device = pick_device(cfg.device)
    paintings = dataset_root(cfg.data.dataset) / split
    rows = []
    for key in methods.names(trained=False):  # methods without training make their row's images here
        for s in seeds or [cfg.seed]:
            own = stage_config(str(cfg.data.dataset), cfg.preset, method=key, seed=s, device=cfg.device,
                               **(overrides or {}))
            target = Run.of(own).translations(split)
            try:  # produce keeps the images its settings made and remakes them when the settings changed
                source = json.loads(json.dumps(methods.get(key).produce(own, target)))
            except UserError as e:  # missing weights or data: the tables say why and how to fix it
                why = tables.record_failure(target, e, f"fix the above, then rerun 03_translate (method {key})")
                rows.append({"method": key, "seed": s, "folder": "", "translated": why})
                continue
            meta = target / "source.json"
            if not meta.exists() or json.loads(meta.read_text()) != source:  # unchanged: the tables stay current
                write_json(meta, source)
            (target.parent / "status.json").unlink(missing_ok=True)
            rows.append({"method": key, "seed": s, "folder": str(target), "translated": "produced"})
    for run in runs_of(cfg.data.dataset, cfg.preset):
        if not methods.get(run.method).trained:
            continue
        if seeds is not None and run.seed not in seeds:
            continue
        checkpoint, target = run.best_checkpoint(), run.translations(split)
        if checkpoint is None:  # translations left by a run whose checkpoints are gone
            rows.append({"method": run.method, "seed": run.seed, "folder": "",
                         "translated": f"not available: no best.pt or last.pt in {run.checkpoints}"})
            continue
        if run.translations_current(split):
            rows.append({"method": run.method, "seed": run.seed, "folder": str(target), "translated": "up to date"})
            continue
        stamp = run.translation_stamp()
        state = load_checkpoint(checkpoint)
        written = translate_folder(load_translator(state, device), paintings, target, cfg.data.image_size)
        write_json(target / "source.json", {"stamp": stamp, "summary": _summary(run, checkpoint.name, state),
                                            "images": len(written)})
        rows.append({"method": run.method, "seed": run.seed, "folder": str(target), "translated": len(written)})
    for release in releases_for(get_setting(str(cfg.data.dataset)).name) if releases and tables.paper_column(cfg) \
            else []:
        target = release_translations(cfg.data.dataset, release.name, split)
        try:
            translator = load_release(release.name, device, retries=0)
        except (DownloadError, CheckpointError, OSError, ValueError) as e:  # a release that cannot be used
            why = tables.record_failure(target, e, f"art2real translate --release {release.name} ...")
            rows.append({"method": release.name, "folder": "", "translated": why})
            continue
        written = translate_folder(translator, paintings, target, cfg.data.image_size)
        write_json(target / "source.json", {"summary": f"released generator {release.name}", "images": len(written)})
        rows.append({"method": release.name, "folder": str(target), "translated": len(written)})
    return pd.DataFrame(rows, columns=["method", "seed", "folder", "translated"])


def _summary(run: Run, name: str, state: dict) -> str:
    t = state["config"]["train"]
    epochs = t["epochs_constant"] + t["epochs_decay"]
    if name == "best.pt":
        return (f"{run.preset} seed {run.seed}: best.pt, epoch {state['epoch']} of {epochs} "
                f"(validation {state['metric'].upper()} {state['value']:.4g})")
    cap = t.get("max_iterations")
    if cap is not None and cap <= epochs:  # counted in iterations (UNIT): the cap ends the run, not the epochs
        return f"{run.preset} seed {run.seed}: {name}, iteration {state['iteration']} of {cap} (no validation)"
    return f"{run.preset} seed {run.seed}: {name}, epoch {state['epoch']} of {epochs} (no validation)"


def comparison_figure(cfg: Config, n: int = 6, split: str = "testA", seed: int | None = None) -> Figure:
    """Figures 5-6: test paintings beside every method's translation (one seed) and released generators'."""
    from .translate import output_names

    paintings = scan_images(dataset_root(cfg.data.dataset) / split).good
    names = output_names(paintings)
    columns = []
    for image_set in tables.method_sets(cfg, split, None if seed is None else [seed]):
        if image_set.folders and image_set.of_paintings:
            folder = image_set.folders[0]
            title = image_set.label.replace(" (not in the paper)", "\n(not in the paper)")
            columns.append((title, {p.name: folder / names[p] for p in paintings if (folder / names[p]).exists()}))
    return figures.comparison_sheet(paintings[:n], columns)


def study_sources(cfg: Config, seed: int | None = None, split: str = "testA") -> tuple[Path, str, dict[str, str]]:
    """For the user study (notebook 08): (the test paintings, Art2Real's translations, {competitor row:
    translations}) from the run layout, one seed. Without Art2Real translations: ("", the paper's competitors with
    "" folders), which the study turns into clearly labelled stand-ins."""
    paintings = dataset_root(cfg.data.dataset) / split
    sets = {s.row: s for s in tables.method_sets(cfg, split, None if seed is None else [seed])
            if s.of_paintings and s.folders and "(release" not in s.row}
    ours = sets.pop("Art2Real", None)
    if ours is None:
        return paintings, "", {"Cycle-GAN": "", "UNIT": "", "DRIT": ""}
    return paintings, str(ours.folders[0]), {row: str(s.folders[0]) for row, s in sets.items()}


def style_transfer_figure(cfg: Config, n: int = 4, seed: int | None = None) -> Figure | None:
    """Style-transferred reals: test photos, the painting drawn as each one's style, the result; None when they
    were not produced."""
    import textwrap

    root = dataset_root(cfg.data.dataset)
    for image_set in tables.method_sets(cfg, "testA", None if seed is None else [seed]):
        if not image_set.folders or image_set.of_paintings:
            continue
        folder = image_set.folders[0]
        pairs = json.loads((folder / "source.json").read_text()).get("pairs", [])[:n]
        photos = [root / p["content"] for p in pairs]
        fig = figures.comparison_sheet(photos, [
            ("painting (style)", {photo.name: root / p["style"] for photo, p in zip(photos, pairs)}),
            ("result", {photo.name: folder / p["output"] for photo, p in zip(photos, pairs)})], first="photo (content)")
        fig.suptitle(textwrap.fill(image_set.label, 60), fontsize=8)
        return fig
    return None


# ---------------------------------------------------------------------------------------------------- 04-06
def fid_stage(cfg: Config, seeds: list[int] | None = None) -> pd.DataFrame:
    return tables.fid_table(cfg, seeds)


def entropy_stage(cfg: Config, classifier: str = "auto", seeds: list[int] | None = None) -> pd.DataFrame:
    return tables.entropy_table(cfg, classifier, seeds)


def tsne_stage(cfg: Config, classifier: str = "auto", seed: int | None = None):
    """Figure 4: (the t-SNE table, its figure), or NotAvailable when no feature network is."""
    from .metrics.features import tsne_table

    root = dataset_root(cfg.data.dataset)
    sets = [("painting", "-", root / "testA"), ("photo", "-", root / "testB")]
    for image_set in tables.method_sets(cfg, "testA", None if seed is None else [seed]):
        if image_set.folders:
            sets.append(("generated", image_set.label, image_set.folders[0]))
    table = tsne_table(sets, classifier, cfg.seed, cfg.data.image_size, pick_device(cfg.device))
    if isinstance(table, NotAvailable):
        return table, None
    title = f"t-SNE of {table['model'].iloc[0].split(' (')[0]} features ({cfg.data.dataset}, {cfg.preset})"
    return table, figures.tsne(table, title)


# ---------------------------------------------------------------------------------------------------- summary
def write_summary(cfg: Config) -> Path:
    """results/<setting>/README.md: every table and figure written so far, and each run's last sample grid."""
    base = results(cfg)
    parts = [f"# Results: {cfg.data.dataset}", "",
             "Written by the notebooks (`make demo` / `make paper ARTIST=...`). Numbers are ours unless a column "
             "says paper; a row with no run says why and how to make one.", ""]
    for name in ("table1_fid", "table3_entropy", "table2_user_study"):
        if (base / f"{name}.md").exists():
            parts += [(base / f"{name}.md").read_text(), ""]
    figs = sorted((base / "figures").glob("*.png")) if (base / "figures").exists() else []
    if figs:
        parts.append("## Figures\n")
        parts += [f"- {f.stem}\n\n  ![{f.stem}](figures/{f.name})\n" for f in figs]
    grids = [(run, sorted((run.dir / "samples").glob("*.png"))[-1:]) for run in runs_of(cfg.data.dataset)]
    if any(last for _, last in grids):
        parts.append("## Training samples (last epoch)\n")
        parts += [f"- {run.method}, {run.preset}, seed {run.seed} "
                  f"({', '.join(methods.get(run.method).sample_titles)}): [{p.name}]({p.relative_to(base)})"
                  for run, last in grids for p in last]
    target = base / "README.md"
    write_text(target, "\n".join(parts) + "\n")
    return target


# ---------------------------------------------------------------------------------------------------- chain
def chain_methods(method_list: list[str] | None = None) -> list[str]:
    """The methods 02 trains: those named (checked), else every registered trained one but the variants trained on
    request (``chain_default`` False)."""
    for m in method_list or []:
        methods.get(m)
    return list(method_list) if method_list else \
        [m for m in methods.names(trained=True) if methods.get(m).chain_default]


def run_chain(artist: str, preset: str = "auto", seed: int = 0, start: str = "00", epochs: int = 0,
              method_list: list[str] | None = None) -> Path:
    """Execute notebooks 00 -> 08 with papermill, one line per stage on the terminal and the full logs in
    ``results/<setting>/notebooks/chain.log``; executed copies go beside it. 02 runs once per method
    (default: every registered trained method but the variants trained on request, ``chain_default`` False)."""
    import papermill as pm

    cfg = stage_config(artist, preset, seed=seed, epochs=epochs)  # fail fast on a wrong parameter
    trained = chain_methods(method_list)
    numbers = [n[:2] for n in NOTEBOOKS]
    first = f"{int(start[:2]):02d}" if str(start)[:2].strip().isdigit() else None
    if first not in numbers:
        raise ConfigError(f"--start {start!r}: give a notebook number, one of {', '.join(numbers)}")
    target = results(cfg, "notebooks")
    log_file = target / "chain.log"
    with _logs_to(log_file):
        for name in NOTEBOOKS:
            if name[:2] < first:
                continue
            runs = [{"method": m, "epochs": epochs} for m in trained] if name == "02_train" else [{}]
            for params in runs:
                parameters = {"artist": artist, "preset": cfg.preset, "seed": seed, **params}
                suffix = f"_{params['method']}" if params else ""
                began = time.perf_counter()
                print(f"[chain] {name}{suffix} ...", flush=True)
                executed = target / f"{name}{suffix}.ipynb"
                try:
                    pm.execute_notebook(str(repo_root() / "notebooks" / f"{name}.ipynb"), str(executed),
                                        parameters=parameters, cwd=str(repo_root()), progress_bar=False,
                                        log_output=False)
                except pm.PapermillExecutionError as e:
                    if e.ename not in USER_ERRORS:
                        raise
                    # the kernel's UserError (missing data offline, a locked run): one line, as from the CLI
                    raise UserError(f"{name}{suffix}: {e.evalue} (executed notebook: {executed})") from None
                print(f"[chain] {name}{suffix} done in {time.perf_counter() - began:.0f} s", flush=True)
    summary = write_summary(cfg)
    print(f"[chain] summary: {summary} (logs: {log_file})")
    return summary


class _logs_to:
    """Route every log record (papermill's, the kernel manager's) and the kernels' stderr (inherited file
    descriptor 2) to a file while the chain runs; the terminal keeps the chain's own lines."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def __enter__(self):
        root = logging.getLogger()
        self.saved = (root.handlers[:], root.level)
        root.handlers = [self.handler]
        root.setLevel(logging.INFO)
        sys.stderr.flush()
        self.stderr = os.dup(2)
        os.dup2(self.handler.stream.fileno(), 2)

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.stderr, 2)
        os.close(self.stderr)
        root = logging.getLogger()
        root.handlers, level = self.saved
        root.setLevel(level)
        self.handler.close()
