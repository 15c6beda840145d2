"""``art2real sweep``: the paper's grid (settings x methods x seeds at one preset) as jobs, on a Slurm cluster or on
one machine, through submitit.

The job graph of each setting, one job per ``chain`` stage:

    banks       once, only when a method uses memory banks
      -> train      one per trained method and seed (methods without banks wait for nothing)
        -> translate    after every training of the setting; also makes the images of methods without training
          -> tables       Table 1 (FID/KID) and Table 3 (entropies) over every seed

Executors: ``slurm`` submits the whole graph at once, each job with ``afterok`` dependencies and
``kill-on-invalid-dep`` (a failure cancels what waits for it), and returns; ``local`` runs the same jobs on this
machine, starting each when its dependencies are done, ``parallel`` at a time, and returns when all have ended.

Done is decided from the results themselves, not from job records, so a run trained by hand counts too:
- a training: its checkpoint's counters mark the end of the sweep's schedule (``trainer.finished``: every epoch,
  the iteration cap or an early stop) and it was trained with the sweep's settings;
- translation: every run's translations were made from its current checkpoint (the stamp ``translate_stage``
  writes), and methods without training have produced their images;
- the tables: both CSV files are newer than every input (the translations' ``source.json`` files and the
  setting's photos and paintings);
- the banks job exists only while a training that needs the banks is not done: banks are an input of training
  alone, and their cache makes a rebuild a load.
Whatever depends on a job that runs runs again. A job of the previous submission that is still pending or running
is kept (it becomes the dependency) rather than submitted twice.

Preemption and time limits: submitit sends a job its signal (SIGUSR2) before the time limit or on preemption. A
training job turns it into ``Trainer.request_stop()`` (the iteration in progress ends, ``last.pt`` is saved), then
hands over to submitit's handler, which calls :meth:`TrainJob.checkpoint` and requeues the job; the requeued job
resumes from ``last.pt`` and ends with the weights of an uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from . import chain, methods
from .config import PRESETS, Config
from .data.images import list_images
from .data.registry import ARTISTS, DATASETS, dataset_root, missing_splits
from .errors import ConfigError, DataError, UserError
from .io import write_json
from .paths import results_dir
from .runs import Run, setting_dir, setting_key

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"
TABLES = ("table1_fid", "table3_entropy")
# Slurm job states (squeue %T) as the sweep reports them
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"}
_RUNNING = {"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}


# ---------------------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Grid:
    """Settings x methods x seeds at one preset, with config overrides (dotted keys) for every job."""

    settings: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()
    device: str = "auto"

    def __post_init__(self):
        if self.preset not in PRESETS or self.preset == "auto":
            raise ConfigError(f"sweep preset must be one of {', '.join(p for p in PRESETS if p != 'auto')}, got "
                              f"{self.preset!r} (jobs run on other machines, where 'auto' could pick another)")
        if not self.settings or not self.methods or not self.seeds:
            raise ConfigError("a sweep needs at least one setting, one method and one seed")
        for m in self.methods:
            if m not in methods.names():
                raise ConfigError(f"unknown method {m!r}; choose among {', '.join(methods.names())}")
        if any(not isinstance(s, int) or s < 0 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct integers >= 0, got {list(self.seeds)}")
        object.__setattr__(self, "settings", tuple(_resolve_setting(s) for s in self.settings))
        object.__setattr__(self, "overrides", tuple((str(k), v) for k, v in dict(self.overrides).items()))
        keys = [self.key(s) for s in self.settings]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"settings {list(self.settings)} name the same folder twice")

    def config(self, setting: str, method: str | None = None, seed: int | None = None) -> Config:
        return chain.stage_config(setting, self.preset, method=method or self.methods[0],
                                  seed=self.seeds[0] if seed is None else seed, device=self.device,
                                  **self.stage_overrides())

    def stage_overrides(self) -> dict:
        """The ``--set`` values as ``chain.stage_config`` keywords."""
        return {k.replace(".", "__"): v for k, v in self.overrides}

    def key(self, setting: str) -> str:
        """The setting's results folder name (folders are keyed by their resolved path)."""
        return setting_key(self.config(setting).data.dataset)

    def trained(self) -> list[str]:
        return [m for m in self.methods if methods.get(m).trained]

    def to_dict(self) -> dict:
        return {**asdict(self), "overrides": dict(self.overrides)}


def _resolve_setting(setting: str) -> str:
    """A registry or artist name stays a name; a folder becomes its absolute path (jobs may start elsewhere)."""
    name = str(setting)
    if name.lower() in ARTISTS or name in DATASETS:
        root = dataset_root(name)
    else:
        root = dataset_root(name).resolve()
        name = str(root)
    if missing_splits(root):
        raise DataError(f"setting {setting!r}: {root} is missing {', '.join(missing_splits(root))}; download it "
                        f"first (`art2real data download {setting}`) on a machine online: jobs do not download")
    return name


# ---------------------------------------------------------------------------------------------------- the jobs
@dataclass
class Job:
    """A stage of one setting as a picklable callable (what submitit runs on a node)."""

    grid: Grid
    setting: str
    threads: int | None = field(default=None, kw_only=True)  # the CPUs the job asked for

    stage = ""

    def __call__(self):
        # the job's log (submitit's .err file) gets the kit's progress lines: resumed from, banks built, ...
        kit = logging.getLogger("art2real")
        if not kit.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            kit.addHandler(handler)
            kit.setLevel(logging.INFO)
        if self.threads:
            _limit_threads(self.threads)
        return self.run()

    def run(self):
        raise NotImplementedError


@dataclass
class BanksJob(Job):
    stage = "banks"

    def run(self) -> dict:
        user = next(m for m in self.grid.methods if methods.get(m).uses_banks)
        result = chain.banks_stage(self.grid.config(self.setting, user))
        return {"patches": int(result.statistics["patches"].sum()), "masks": {k: str(v) for k, v in
                                                                             result.masks.items()}}


@dataclass
class TrainJob(Job):
    method: str = "cyclegan"
    seed: int = 0
    stage = "train"
    _trainer: Any = field(default=None, init=False, repr=False, compare=False)

    def run(self) -> dict:
        from .train.trainer import Trainer

        cfg = self.grid.config(self.setting, self.method, self.seed)
        if training_done(cfg):
            return {"run_dir": str(Run.of(cfg).dir), "already_done": True}
        self._trainer = Trainer(cfg, progress=False)
        summary, signum = self._fit_deferring_signal()
        if signum is not None:
            handler = signal.getsignal(signum)
            if callable(handler):  # submitit's: checkpoint() below, requeue, exit
                handler(signum, None)
        return {k: v for k, v in summary.items() if k != "history"}

    def _fit_deferring_signal(self) -> tuple[dict, int | None]:
        """Fit with the job scheduler's signal turned into a stop at the next iteration boundary; returns the
        summary and the signal when it interrupted the run."""
        signum = _requeue_signal()
        caught: list[int] = []

        def stop(sig, frame):
            caught.append(sig)
            self._trainer.request_stop()

        previous = signal.signal(signum, stop)
        try:
            summary = self._trainer.fit(progress=False)
        finally:
            signal.signal(signum, previous)
        return summary, (caught[0] if caught and summary["interrupted"] else None)

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on preemption or time-out: save, and resubmit the same training (it resumes from
        ``last.pt``). Reached at an iteration boundary (see ``__call__``) or before training began."""
        from submitit.helpers import DelayedSubmission

        if self._trainer is not None:
            self._trainer.save()
        return DelayedSubmission(TrainJob(self.grid, self.setting, self.method, self.seed, threads=self.threads))

    def __getstate__(self):
        return {**self.__dict__, "_trainer": None}  # the networks never travel in the job's pickle


@dataclass
class TranslateJob(Job):
    stage = "translate"

    def run(self) -> list[dict]:
        table = chain.translate_stage(self.grid.config(self.setting), list(self.grid.seeds),
                                      overrides=self.grid.stage_overrides())
        return table.astype(object).where(table.notna(), None).to_dict("records")


@dataclass
class TablesJob(Job):
    stage = "tables"

    def run(self) -> dict:
        cfg = self.grid.config(self.setting)
        seeds = list(self.grid.seeds)
        written = {TABLES[0]: chain.save_table(cfg, chain.fid_stage(cfg, seeds), TABLES[0]),
                   TABLES[1]: chain.save_table(cfg, chain.entropy_stage(cfg, seeds=seeds), TABLES[1])}
        return {k: str(v) for k, v in written.items()}


def _local_threads(cpus: int, parallel: int) -> int:
    """Threads of a job on this machine: what it asks, at most its share of the cores (``cpus`` defaults to a
    cluster node's 8; on a 2-core machine 8 threads made a demo training 4x slower)."""
    return max(1, min(cpus, (os.cpu_count() or 1) // parallel))


def _limit_threads(n: int) -> None:
    """Use the CPUs the job asked for, no more: without CPU binding (or on a shared machine) torch's and BLAS's
    thread pools size themselves to the whole node, and oversubscribed pools that spin-wait run many times
    slower (a smoke iteration: 0.19 s with one thread, 2.8 s with two, on a loaded 2-core machine)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)  # numpy's BLAS too (FID's eigendecompositions)


def _requeue_signal() -> int:
    """The signal submitit requeues on (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise)."""
    from submitit.core.job_environment import JobEnvironment

    return JobEnvironment._usr_sig()


# ---------------------------------------------------------------------------------------------------- the graph
@dataclass(frozen=True)
class Node:
    name: str  # <setting key>/<stage>[/<method>/seed<seed>]
    job: Job
    after: tuple[str, ...] = ()


def graph(grid: Grid) -> list[Node]:
    """Every job of the grid, dependencies first."""
    nodes = []
    for setting in grid.settings:
        key = grid.key(setting)
        banks = [f"{key}/banks"] if any(methods.get(m).uses_banks for m in grid.methods) else []
        if banks:
            nodes.append(Node(banks[0], BanksJob(grid, setting)))
        trainings = []
        for method in grid.trained():
            for seed in grid.seeds:
                name = f"{key}/train/{method}/seed{seed}"
                trainings.append(name)
                nodes.append(Node(name, TrainJob(grid, setting, method, seed),
                                  tuple(banks) if methods.get(method).uses_banks else ()))
        nodes.append(Node(f"{key}/translate", TranslateJob(grid, setting), tuple(trainings)))
        nodes.append(Node(f"{key}/tables", TablesJob(grid, setting), (f"{key}/translate",)))
    return nodes


# ---------------------------------------------------------------------------------------------------- done
def _counters(run: Run) -> dict | None:
    """A run's newest readable checkpoint, tensors memory-mapped (only its counters and config are read)."""
    import torch

    for name in ("last.pt", "previous.pt"):
        path = run.checkpoints / name
        if path.is_file():
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:  # noqa: BLE001  a corrupt file: the trainer falls back (or says why) itself
                continue
    return None


def training_done(cfg: Config) -> bool:
    """The run finished the schedule of ``cfg``, with ``cfg``'s settings."""
    from .config import to_dict
    from .train.trainer import config_changes, finished

    state = _counters(Run.of(cfg))
    if state is None or "epoch" not in state or config_changes(state["config"], to_dict(cfg)):
        return False
    return finished(state, cfg)


def translations_done(grid: Grid, setting: str) -> bool:
    for method in grid.methods:
        for seed in grid.seeds:
            run = Run.of(grid.config(setting, method, seed))
            if not (run.translations() / "source.json").exists():
                return False
            if methods.get(method).trained and not run.translations_current():
                return False
    return True


def table_inputs(grid: Grid, setting: str) -> list[Path]:
    """What the tables are computed from: the translations' records and the setting's images."""
    root = dataset_root(grid.config(setting).data.dataset)
    records = [Run.of(grid.config(setting, m, s)).translations() / "source.json" for m in grid.methods
               for s in grid.seeds]
    return records + [p for split in ("trainB", "testA", "testB") for p in list_images(root / split)]


def tables_done(grid: Grid, setting: str) -> bool:
    base = setting_dir(grid.config(setting).data.dataset)
    outputs = [base / f"{name}.csv" for name in TABLES]
    inputs = table_inputs(grid, setting)
    if not all(p.exists() for p in outputs + inputs):
        return False
    return min(p.stat().st_mtime_ns for p in outputs) > max(p.stat().st_mtime_ns for p in inputs)


def to_run(grid: Grid, keep: set[str] = frozenset()) -> dict[str, bool]:
    """{node name: whether it must run}; ``keep``: nodes still in flight from a previous submission (they run)."""
    needed: dict[str, bool] = {}
    nodes = graph(grid)
    for node in nodes:  # trainings first: the banks depend on them
        if isinstance(node.job, TrainJob):
            cfg = grid.config(node.job.setting, node.job.method, node.job.seed)
            needed[node.name] = node.name in keep or not training_done(cfg)
    for node in nodes:
        job = node.job
        if isinstance(job, BanksJob):
            users = [n.name for n in nodes if node.name in n.after]
            needed[node.name] = node.name in keep or any(needed[u] for u in users)
        elif isinstance(job, TranslateJob):
            needed[node.name] = (node.name in keep or any(needed[a] for a in node.after)
                                 or not translations_done(grid, job.setting))
        elif isinstance(job, TablesJob):
            needed[node.name] = (node.name in keep or any(needed[a] for a in node.after)
                                 or not tables_done(grid, job.setting))
    return {n.name: needed[n.name] for n in nodes}


# ---------------------------------------------------------------------------------------------------- resources
@dataclass
class Resources:
    """What each job asks of the scheduler. ``time`` is minutes per job: a training that reaches it is requeued
    and resumes (up to ``max_requeues`` times), the other stages fail."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int = 1
    cpus: int = 8
    mem_gb: float | None = None
    time: int = 24 * 60
    setup: tuple[str, ...] = ()  # shell lines before the job (module load ..., source venv/bin/activate)
    max_requeues: int = 20
    signal_delay_s: int = 120  # the signal comes this long before the time limit

    def slurm(self, name: str, after: list[str]) -> dict:
        params = {"job_name": name, "time": self.time, "cpus_per_task": self.cpus, "signal_delay_s":
                  self.signal_delay_s, "additional_parameters": {"kill-on-invalid-dep": "yes"}}
        for key, value in (("partition", self.partition), ("account", self.account), ("qos", self.qos),
                           ("mem_gb", self.mem_gb), ("setup", list(self.setup) or None)):
            if value is not None:
                params[key] = value
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if after:
            params["dependency"] = "afterok:" + ":".join(after)
        return params

    def local(self) -> dict:
        return {"timeout_min": self.time, "gpus_per_node": self.gpus, "signal_delay_s": self.signal_delay_s,
                **({"setup": list(self.setup)} if self.setup else {})}


RESOURCE_KEYS = {f.name for f in fields(Resources)}


def load_resources(path: str | Path | None, **given) -> tuple[str, Resources, dict[str, Resources]]:
    """(executor, resources for every stage, per-stage resources) from an optional YAML file and flags; flags
    (values not None) win over the file. The file holds ``executor``, any field of :class:`Resources`, and
    ``stages: {train: {time: 2880}, tables: {gpus: 1}}`` for what one stage asks differently."""
    data = _read_yaml(Path(path)) if path else {}
    in_file = data.pop("executor", None)
    executor = given.pop("executor", None) or in_file or "slurm"
    stages = data.pop("stages", {}) or {}
    if not isinstance(stages, dict) or not all(isinstance(v, dict) or v is None for v in stages.values()):
        raise ConfigError(f"{path}: stages must map a stage to its resources, e.g. `stages: {{train: {{time: 2880}}}}`")
    base = _resources(data, path)
    flags = _resources({k: v for k, v in given.items() if v is not None}, "flags", as_dict=True)
    base = replace(base, **flags)
    per_stage = {}
    for stage, values in stages.items():
        if stage not in ("banks", "train", "translate", "tables"):
            raise ConfigError(f"{path}: unknown stage {stage!r} under stages; use banks, train, translate, tables")
        # a stage's own values from the file, then the flags again: a flag wins everywhere
        per_stage[stage] = replace(base, **{**_resources(values or {}, path, as_dict=True), **flags})
    if executor not in ("slurm", "local"):
        raise ConfigError(f"executor must be slurm or local, got {executor!r}")
    return executor, base, per_stage


def _resources(values: dict, path, as_dict: bool = False):
    unknown = sorted(set(values) - RESOURCE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown resource key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(RESOURCE_KEYS))}")
    for key, value in values.items():
        _check_resource(key, value, path)
    values = {k: tuple(v) if k == "setup" else v for k, v in values.items()}
    return values if as_dict else Resources(**values)


_COUNTS = {"gpus": 0, "cpus": 1, "time": 1, "max_requeues": 0, "signal_delay_s": 0}  # key: least value


def _check_resource(key: str, value, path) -> None:
    """A wrong type stops here with the key's name, not later inside sbatch or submitit."""
    if key in _COUNTS:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= _COUNTS[key]
        wanted = f"an integer >= {_COUNTS[key]}" + (" (minutes)" if key == "time" else "")
    elif key == "mem_gb":
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)
        wanted = "a number of GB > 0"
    elif key == "setup":
        ok = isinstance(value, (list, tuple)) and all(isinstance(line, str) for line in value)
        wanted = "a list of shell lines"
    else:
        ok = value is None or isinstance(value, str)
        wanted = "a name"
    if not ok:
        where = f"--{key.replace('_', '-')}" if path == "flags" else f"{path}: resource {key}"
        raise ConfigError(f"{where} must be {wanted}, got {value!r}")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"resources file {path} not found; pass a YAML file such as `partition: gpu` "
                          f"`gpus: 1` `time: 1440`, or give the values as flags (--partition, --gpus, --time)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of resources (partition, gpus, time, ...)")
    return data


# ---------------------------------------------------------------------------------------------------- submit
def default_folder(name: str) -> Path:
    return results_dir() / "sweeps" / name


def load_manifest(folder: str | Path) -> dict | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def submit(grid: Grid, folder: str | Path, executor: str = "slurm", resources: Resources | None = None,
           stages: dict[str, Resources] | None = None, parallel: int = 1, poll_s: float = 2.0) -> dict:
    """Submit what is not done; returns the manifest (also written to ``folder/sweep.json``). Slurm: returns once
    every job is queued; local: returns when every job has ended."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    folder = Path(folder).resolve()
    resources, stages = resources or Resources(), stages or {}
    old = _in_flight(folder, executor)
    needed = to_run(grid, set(old))
    manifest = {"grid": grid.to_dict(), "executor": executor, "folder": str(folder), "pid": os.getpid(),
                "submitted": time.strftime("%Y-%m-%d %H:%M:%S"), "jobs": {}}
    for node in graph(grid):
        record = {"stage": node.job.stage, "after": [a for a in node.after if needed[a]], "job_id": None,
                  "action": "run" if needed[node.name] else "done"}
        if node.name in old:
            record.update({k: old[node.name][k] for k in ("job_id", "stdout", "stderr")}, action="kept")
        manifest["jobs"][node.name] = record
    (folder / "jobs").mkdir(parents=True, exist_ok=True)
    write_json(folder / MANIFEST, manifest)
    nodes = {n.name: n for n in graph(grid)}
    if executor == "slurm":
        _submit_slurm(manifest, nodes, resources, stages)
    else:
        _run_local(manifest, nodes, resources, stages, parallel, poll_s)
    return manifest


def _in_flight(folder: Path, executor: str) -> dict[str, dict]:
    """The previous submission's Slurm jobs still pending or running, by node name (they are kept). A local sweep
    still running in the folder is an error: its process is the one that starts its jobs."""
    previous = load_manifest(folder)
    if previous is None:
        return {}
    if previous["executor"] == "local" and _alive(previous.get("pid")) and previous.get("pid") != os.getpid():
        raise UserError(f"a local sweep is already running in {folder} (process {previous['pid']}); wait for it or "
                        f"stop it (kill {previous['pid']}) first")
    if previous["executor"] != "slurm" or executor != "slurm":
        return {}
    return {r["job"]: previous["jobs"][r["job"]] for r in status(folder) if r["state"] in ("pending", "running")}


def _job_name(node_name: str) -> str:
    return "a2r:" + node_name.replace("/", ":")


def _submit_slurm(manifest: dict, nodes: dict[str, Node], resources: Resources, stages: dict) -> None:
    import submitit

    folder = Path(manifest["folder"])
    ex = submitit.SlurmExecutor(folder / "jobs", max_num_timeout=resources.max_requeues)
    for name, record in manifest["jobs"].items():
        if record["action"] != "run":
            continue
        after = [manifest["jobs"][a]["job_id"] for a in record["after"]]
        res = stages.get(record["stage"], resources)
        ex.update_parameters(**res.slurm(_job_name(name), after))
        job = ex.submit(replace(nodes[name].job, threads=res.cpus))
        record.update(job_id=job.job_id, stdout=str(job.paths.stdout), stderr=str(job.paths.stderr))
        write_json(folder / MANIFEST, manifest)
        log.info("submitted %s as job %s", name, job.job_id)


def _run_local(manifest: dict, nodes: dict[str, Node], resources: Resources, stages: dict, parallel: int,
               poll_s: float) -> None:
    """Start each job when its dependencies are done, ``parallel`` at a time; a failure cancels what waits for
    it."""
    import submitit

    folder = Path(manifest["folder"])
    jobs = manifest["jobs"]
    ex = submitit.LocalExecutor(folder / "jobs", max_num_timeout=resources.max_requeues)
    running: dict[str, Any] = {}
    waiting = [n for n, r in jobs.items() if r["action"] == "run"]
    ended: dict[str, str] = {n: "done" for n, r in jobs.items() if r["action"] == "done"}
    while waiting or running:
        for name, job in list(running.items()):
            if job.done():
                del running[name]
                ended[name] = job_state(folder, manifest, name)[0]
        for name in list(waiting):
            after = jobs[name]["after"]
            if any(ended.get(a) not in (None, "done") for a in after):
                waiting.remove(name)
                ended[name] = "cancelled"
                jobs[name]["action"] = "cancelled: " + ", ".join(a for a in after if ended.get(a) != "done")
            elif all(ended.get(a) == "done" for a in after) and len(running) < parallel:
                waiting.remove(name)
                res = stages.get(jobs[name]["stage"], resources)
                ex.update_parameters(**res.local())
                job = ex.submit(replace(nodes[name].job, threads=_local_threads(res.cpus, parallel)))
                running[name] = job
                jobs[name].update(job_id=job.job_id, stdout=str(job.paths.stdout), stderr=str(job.paths.stderr))
                log.info("started %s (pid %s)", name, job.job_id)
        write_json(folder / MANIFEST, manifest)
        if waiting or running:
            time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------------- status
def job_state(folder: str | Path, manifest: dict, name: str, queue: dict[str, tuple[str, str]] | None = None
              ) -> tuple[str, str]:
    """(pending | running | done | failed, detail) of one job of a manifest."""
    record = manifest["jobs"][name]
    if record["action"] == "done":
        return "done", "already done when the sweep was submitted"
    if record["action"].startswith("cancelled"):
        return "failed", record["action"].replace("cancelled: ", "cancelled: waited for ")
    job_id = record.get("job_id")
    if job_id is None:
        if not (manifest["executor"] == "local" and _alive(manifest.get("pid"))):
            return "failed", "never started: the sweep process ended; run the sweep again"
        waiting = [a for a in record["after"] if job_state(folder, manifest, a, queue)[0] != "done"]
        return "pending", ("waiting for " + ", ".join(waiting)) if waiting else "waiting for a free slot (--parallel)"
    result = Path(folder) / "jobs" / f"{job_id}_0_result.pkl"
    if result.exists():
        from submitit.core.utils import pickle_load

        outcome, value = pickle_load(result)
        if outcome == "success":
            return "done", ""
        return "failed", str(value).strip().splitlines()[-1][:300]
    if manifest["executor"] == "local":
        return ("running", f"pid {job_id}") if _alive(int(job_id)) else ("failed", "ended without a result")
    queue = squeue([job_id]) if queue is None else queue
    if job_id in queue:
        state, reason = queue[job_id]
        if state in _PENDING:
            return "pending", f"{state} ({reason})" if reason and reason != "None" else state
        if state in _RUNNING:
            return "running", state
        return "failed", f"{state} ({reason})" if reason and reason != "None" else state
    return "failed", "not in the queue and no result: see its log"


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a finished child that nobody waited for is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def squeue(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} of the jobs Slurm still lists (finished ones stay MinJobAge seconds)."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%T|%r", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=90, check=False)
    except FileNotFoundError:
        raise UserError("squeue is not on PATH: run `art2real sweep status` where Slurm's commands are") from None
    except subprocess.TimeoutExpired:
        raise UserError("squeue did not answer in 90 s; is the Slurm controller reachable from here?") from None
    # jobs Slurm has forgotten make it fail with "Invalid job id"; any other failure (the controller unreachable)
    # must not read as "every job failed", which a resubmission would answer by submitting them twice
    if out.returncode and "invalid job id" not in out.stderr.lower():
        why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise UserError(f"squeue failed ({why}); is the Slurm controller reachable from here?")
    rows = [line.split("|") for line in out.stdout.splitlines() if line.count("|") == 2]
    return {i: (s, r) for i, s, r in rows}


def status(folder: str | Path) -> list[dict]:
    """One row per job: name, stage, job id, state, detail, log paths."""
    manifest = load_manifest(folder)
    if manifest is None:
        raise UserError(f"no sweep at {folder} ({MANIFEST} missing): start one with `art2real sweep ...`")
    ids = [r["job_id"] for r in manifest["jobs"].values() if r.get("job_id")]
    queue = squeue(ids) if manifest["executor"] == "slurm" else {}
    rows = []
    for name, record in manifest["jobs"].items():
        state, detail = job_state(folder, manifest, name, queue)
        rows.append({"job": name, "stage": record["stage"], "job_id": record.get("job_id"), "state": state,
                     "detail": detail, "stdout": record.get("stdout"), "stderr": record.get("stderr")})
    return rows


def wait(folder: str | Path, timeout_s: float | None = None, poll_s: float = 5.0) -> list[dict]:
    """Poll until no job is pending or running; returns the last status."""
    began = time.monotonic()
    while True:
        rows = status(folder)
        if all(r["state"] in ("done", "failed") for r in rows):
            return rows
        if timeout_s is not None and time.monotonic() - began > timeout_s:
            raise TimeoutError(f"sweep {folder} still has jobs in flight after {timeout_s:.0f} s")
        time.sleep(poll_s)


def status_text(rows: list[dict]) -> str:
    width = max(len(r["job"]) for r in rows)
    lines = [f"{'job':{width}s}  {'id':>8s}  {'state':8s}  detail / log"]
    for r in rows:
        lines.append(f"{r['job']:{width}s}  {r['job_id'] or '-'!s:>8s}  {r['state']:8s}  {r['detail']}".rstrip())
        if r["stdout"]:
            lines.append(f"{'':{width}s}  {'':8s}  {'':8s}  log: {r['stdout']} (stderr: .err)")
    counts = {s: sum(r["state"] == s for r in rows) for s in ("pending", "running", "done", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI
def add_sweep_commands(subparsers) -> None:
    """``art2real sweep [run|status] ...``; hooked into ``art2real/cli.py``'s ``build_parser``."""
    s = subparsers.add_parser("sweep", help="settings x methods x seeds as jobs on Slurm (or locally); status",
                              description=__doc__.split("\n\n")[0])
    s.add_argument("action", nargs="?", choices=["run", "status"], default="run",
                   help="run (default): submit what is not done; status: pending, running, done, failed, logs")
    s.add_argument("--settings", nargs="+", default=["demo"], help="artists / dataset names / folders")
    s.add_argument("--methods", nargs="+", choices=methods.names(),
                   help="default: the paper's rows (" + ", ".join(methods.names(in_paper=True)) + ")")
    s.add_argument("--seeds", nargs="+", type=int, default=[0], help="one training per method and seed")
    s.add_argument("--preset", default="paper", choices=[p for p in PRESETS if p != "auto"])
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for every job")
    s.add_argument("--device", default="auto")
    s.add_argument("--name", help="the sweep's folder is results/sweeps/NAME (default: the preset)")
    s.add_argument("--folder", type=Path, help="the sweep's folder (manifest, job scripts, logs) instead of --name")
    s.add_argument("--executor", choices=["slurm", "local"], help="default: the resources file's, else slurm")
    s.add_argument("--resources", type=Path, help="YAML: executor, partition, account, qos, gpus, cpus, mem_gb, "
                                                  "time, setup, max_requeues, stages: {train: {time: ...}}")
    for flag, kind, text in (("--partition", str, None), ("--account", str, None), ("--qos", str, None),
                             ("--gpus", int, "GPUs per job (default 1)"), ("--cpus", int, "CPUs per job (8)"),
                             ("--mem-gb", float, "memory per job"),
                             ("--time", int, "minutes per job (1440); trainings requeue and resume past it"),
                             ("--max-requeues", int, "time-outs a training may requeue after (20)")):
        s.add_argument(flag, type=kind, help=text)
    s.add_argument("--parallel", type=int, default=1, help="local executor: jobs at a time")
    s.add_argument("--wait", action="store_true", help="slurm: stay until every job has ended, then print status")
    s.add_argument("--dry-run", action="store_true", help="print the job graph and what would run; submit nothing")
    s.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from .config import _parse_overrides

    folder = args.folder or default_folder(args.name or args.preset)
    if args.action == "status":
        print(status_text(status(folder)))
        return 0
    grid = Grid(tuple(args.settings), tuple(args.methods or methods.names(in_paper=True)), tuple(args.seeds),
                args.preset, tuple(_parse_overrides(list(args.set or [])).items()), args.device)
    executor, resources, stages = load_resources(
        args.resources, executor=args.executor, partition=args.partition, account=args.account, qos=args.qos,
        gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem_gb, time=args.time, max_requeues=args.max_requeues)
    if args.dry_run:
        print(graph_text(grid))
        return 0
    submit(grid, folder, executor, resources, stages, parallel=args.parallel)
    rows = wait(folder) if args.wait else status(folder)
    print(status_text(rows))
    print(f"status: art2real sweep status --folder {folder}")
    return 0 if all(r["state"] != "failed" for r in rows) else 1


def graph_text(grid: Grid) -> str:
    """The job graph, one line a job: what it waits for and whether it would run."""
    needed = to_run(grid)
    produced = [m for m in grid.methods if not methods.get(m).trained]
    lines = []
    for n in graph(grid):
        after = ", ".join(n.after) if len(n.after) <= 3 else f"{len(n.after)} trainings ({n.after[0]}, ...)"
        note = f"; produces {', '.join(produced)}" if produced and isinstance(n.job, TranslateJob) else ""
        lines.append(f"{n.name:40s} {'run' if needed[n.name] else 'done':4s}  after: {after or '-'}{note}")
    return "\n".join(lines)
