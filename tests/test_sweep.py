"""The sweep: its job graph and done rules; a stop requested mid-training resumes to the same weights; the smoke grid
(2 settings x 2 methods x 2 seeds) on a real one-node Slurm cluster, ending with tables over seeds; a signalled
training requeued by Slurm that resumes to the weights of an uninterrupted run; the local executor, a sweep and a
time limit that a training outlives by requeueing."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from art2real import sweep
from art2real.errors import ConfigError, UserError
from art2real.runs import Run
from art2real.train.checkpoint import load_checkpoint
from art2real.train.trainer import Trainer

from .conftest import DEMO
from .slurm import slurm_cluster  # noqa: F401  (the cluster fixture)

RESOURCES = sweep.Resources(partition="debug", gpus=0, cpus=1, time=30)


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    """A second setting: a copy of data/demo with fewer images (another folder, so other results)."""
    root = tmp_path_factory.mktemp("settings") / "demo_small"
    for split, n in (("trainA", 6), ("trainB", 8), ("testA", 4), ("testB", 4)):
        (root / split).mkdir(parents=True)
        for path in sorted((DEMO / split).glob("*.jpg"))[:n]:
            shutil.copy(path, root / split / path.name)
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """The jobs of these tests ask for one CPU and use one thread; runs in this process do the same, so their
    weights compare bit for bit (and oversubscribed thread pools do not slow a shared machine down)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def straight_run(cfg, folder: Path) -> dict:
    """The networks of the same training never interrupted."""
    Trainer(cfg, folder, progress=False).fit(progress=False)
    return load_checkpoint(folder / "checkpoints" / "last.pt")["method"]["nets"]


def nets(run: Run) -> dict:
    return load_checkpoint(run.checkpoints / "last.pt")["method"]["nets"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


def slurm_times(cluster) -> dict[str, tuple[str, str]]:
    """{job id: (start, end)} as Slurm recorded them (ISO times to the second; finished jobs stay MinJobAge)."""
    rows = cluster.run("squeue", "-h", "--states=all", "-o", "%i|%S|%e").split()
    return {i: (start, end) for i, start, end in (r.split("|") for r in rows)}


# ---------------------------------------------------------------------------------------------------- no cluster
def test_graph_waits_for_banks_only_where_a_method_uses_them(small_demo):
    grid = sweep.Grid(("demo", str(small_demo)), ("cyclegan", "art2real"), (0, 1), "smoke")
    nodes = {n.name: n for n in sweep.graph(grid)}
    key = grid.key(str(small_demo))
    assert key.startswith("demo_small-") and grid.key("demo") == "demo"
    assert len(nodes) == 2 * (1 + 4 + 2)
    assert nodes[f"{key}/train/art2real/seed1"].after == (f"{key}/banks",)
    assert nodes[f"{key}/train/cyclegan/seed0"].after == ()
    assert set(nodes[f"{key}/translate"].after) == {f"{key}/train/{m}/seed{s}" for m in ("cyclegan", "art2real")
                                                    for s in (0, 1)}
    assert nodes[f"{key}/tables"].after == (f"{key}/translate",)
    only_cyclegan = sweep.graph(sweep.Grid(("demo",), ("cyclegan",), (0,), "smoke"))
    assert [n.name for n in only_cyclegan] == ["demo/train/cyclegan/seed0", "demo/translate", "demo/tables"]
    assert all(sweep.to_run(grid).values())  # nothing done yet
    # a method without training has no job of its own: the translate job produces its images
    with_gatys = sweep.graph(sweep.Grid(("demo",), ("gatys", "cyclegan"), (0,), "smoke"))
    assert [n.name for n in with_gatys] == ["demo/train/cyclegan/seed0", "demo/translate", "demo/tables"]


def test_bad_grids_stop_with_a_message(tmp_path):
    with pytest.raises(ConfigError, match="'auto' could pick another"):
        sweep.Grid(("demo",), ("cyclegan",), (0,), "auto")
    with pytest.raises(ConfigError, match="distinct integers"):
        sweep.Grid(("demo",), ("cyclegan",), (0, 0), "smoke")
    with pytest.raises(ConfigError, match="unknown method 'pix2pix'"):
        sweep.Grid(("demo",), ("pix2pix",), (0,), "smoke")
    with pytest.raises(ConfigError, match="same folder twice"):
        sweep.Grid(("demo", str(DEMO)), ("cyclegan",), (0,), "smoke")
    (tmp_path / "half" / "trainA").mkdir(parents=True)
    with pytest.raises(UserError, match="missing trainB, testA, testB"):
        sweep.Grid((str(tmp_path / "half"),), ("cyclegan",), (0,), "smoke")


def test_resources_from_yaml_and_flags(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("executor: slurm\npartition: gpu\naccount: art\nqos: high\ngpus: 1\ncpus: 10\nmem_gb: 48\n"
                    "time: 720\nsetup: [module load cuda]\nstages:\n  tables: {time: 90}\n")
    executor, base, stages = sweep.load_resources(path, partition="a100", gpus=None)
    assert executor == "slurm" and base.partition == "a100" and base.account == "art" and base.gpus == 1
    assert stages["tables"].time == 90 and stages["tables"].partition == "a100" and base.time == 720
    params = base.slurm("a2r:demo:tables", ["11", "12"])
    assert params["dependency"] == "afterok:11:12" and params["mem_gb"] == 48 and params["qos"] == "high"
    assert params["additional_parameters"] == {"kill-on-invalid-dep": "yes"} and params["gpus_per_node"] == 1
    assert params["setup"] == ["module load cuda"]
    executor, base, stages = sweep.load_resources(path, executor="local", time=60)  # flags win, stages too
    assert executor == "local" and base.time == 60 and stages["tables"].time == 60
    path.write_text("partitoin: gpu\n")
    with pytest.raises(ConfigError, match="unknown resource key.*partitoin"):
        sweep.load_resources(path)


def test_cli_dry_run_prints_the_graph(capsys):
    parser = argparse.ArgumentParser()
    sweep.add_sweep_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "--settings", "demo", "--methods", "cyclegan", "art2real", "--seeds", "0",
                              "1", "--preset", "smoke", "--dry-run"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["demo/banks", "run"] and len(lines) == 7
    assert "after: demo/banks" in next(line for line in lines if line.startswith("demo/train/art2real/seed1"))


def test_the_cli_has_sweep_and_stops_a_wrong_grid_with_one_line(tmp_path, capsys):
    from art2real import cli

    assert cli.main(["sweep", "--settings", "demo", "--methods", "cyclegan", "--preset", "smoke", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("demo/train/cyclegan/seed0")
    (tmp_path / "bad.yaml").write_text("gpus: two\n")
    for argv, message in ((["--seeds", "0", "0"], "seeds must be distinct integers"),
                          (["--set", "train.nope=1"], "unknown config key 'train.nope'"),
                          (["--resources", str(tmp_path / "none.yaml")], "none.yaml not found"),
                          (["--resources", str(tmp_path / "bad.yaml")], "resource gpus must be an integer"),
                          (["--time", "0"], "--time must be an integer >= 1")):
        assert cli.main(["sweep", "--preset", "smoke", "--dry-run", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert cli.main(["sweep", "status", "--folder", str(tmp_path / "nowhere")]) == 2
    assert "no sweep at" in capsys.readouterr().err


def test_request_stop_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    """What a preempted job does: the stop lands mid-step, the step finishes, last.pt is saved, fit returns
    interrupted; a new Trainer resumes to the weights of a run never stopped."""
    cfg = sweep.Grid(("demo",), ("cyclegan",), (0,), "smoke", (("train.epochs_constant", 2),
                                                                ("train.epochs_decay", 1))).config("demo")
    Trainer(cfg, tmp_path / "straight", progress=False).fit(progress=False)
    stopped = Trainer(cfg, tmp_path / "stopped", progress=False)
    step, calls = stopped.method.train_step, []

    def step_then_signal(batch):
        calls.append(1)
        if len(calls) == 6:  # iteration 6 of 12, mid-epoch 2: the request arrives inside the step
            stopped.request_stop()
        return step(batch)

    stopped.method.train_step = step_then_signal
    summary = stopped.fit(progress=False)
    assert summary["interrupted"] and summary["iterations"] == 6 and not stopped.finished()
    state = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert (state["iteration"], state["epoch"], state["epoch_iter"]) == (6, 1, 2)
    resumed = Trainer(cfg, tmp_path / "stopped", progress=False)
    assert not resumed.fit(progress=False)["interrupted"] and resumed.finished()
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["method"]["nets"]
    assert same_weights(load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["method"]["nets"],
                        straight)
    assert len((tmp_path / "stopped" / "losses.csv").read_text().splitlines()) == 1 + 12


# ---------------------------------------------------------------------------------------------------- Slurm
def test_smoke_grid_on_slurm_ends_with_tables_over_seeds(slurm_cluster, small_demo, results, tmp_path):
    grid = sweep.Grid(("demo", str(small_demo)), ("cyclegan", "art2real"), (0, 1), "smoke")
    folder = tmp_path / "sweep"
    began = time.monotonic()
    manifest = sweep.submit(grid, folder, "slurm", RESOURCES)
    rows = sweep.wait(folder, timeout_s=900, poll_s=2)
    wall = time.monotonic() - began
    print(f"\nsmoke grid on the one-node cluster: {wall:.0f} s\n{sweep.status_text(rows)}")
    failed = [r for r in rows if r["state"] != "done"]
    assert not failed, "\n".join(f"{r['job']}: {r['detail']}\n{Path(r['stderr']).read_text()[-2000:]}"
                                 for r in failed if r["stderr"]) or slurm_cluster.logs()
    assert all(m["action"] == "run" and m["job_id"] for m in manifest["jobs"].values())
    jobs = manifest["jobs"]
    times = slurm_times(slurm_cluster)
    for name, record in jobs.items():  # Slurm kept the order: each job started after its dependencies ended
        for dep in record["after"]:
            assert times[record["job_id"]][0] >= times[jobs[dep]["job_id"]][1], (name, dep, times)
    for setting in grid.settings:
        base = results / grid.key(setting)
        fid = pd.read_csv(base / "table1_fid.csv").set_index("method")
        for row in ("Cycle-GAN", "Art2Real"):
            per_seed = [float(v) for v in fid.loc[row, "FID per seed"].split()]
            assert len(per_seed) == 2 and fid.loc[row, "seeds"] == 2
            assert fid.loc[row, "FID"] == pytest.approx(sum(per_seed) / 2, rel=1e-5)
            assert fid.loc[row, "FID std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5, rel=1e-4)
        entropy = pd.read_csv(base / "table3_entropy.csv").set_index("method")
        assert len(str(entropy.loc["Art2Real", "segmentation per seed"]).split()) == 2
        md = (base / "table1_fid.md").read_text()
        lines = [[c.strip() for c in line.strip("| ").split(" | ")] for line in md.splitlines() if line.startswith("|")]
        column = lines[0].index("seeds")
        assert {r[column] for r in lines[2:] if r[0] in ("Cycle-GAN", "Art2Real")} == {"2"}, md  # a count
        print(f"\n{md}")
    # a second submission finds everything done and submits nothing
    again = sweep.submit(grid, folder, "slurm", RESOURCES)
    assert {r["action"] for r in again["jobs"].values()} == {"done"}
    assert {r["state"] for r in sweep.status(folder)} == {"done"}


def _release_requeued(cluster, job_id: str, timeout: float = 120) -> str:
    """Slurm holds a requeued job ~2 minutes (BeginTime); start it now instead. Returns the state seen."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state, reason = cluster.jobs().get(job_id, ("", ""))
        if state == "PENDING" and reason == "BeginTime":
            cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} was not requeued: {cluster.jobs().get(job_id)}")


def test_signalled_training_on_slurm_is_requeued_and_resumes_to_the_same_weights(slurm_cluster, tmp_path):
    grid = sweep.Grid(("demo",), ("cyclegan",), (0,), "smoke", (("train.epochs_constant", 40),
                                                                ("train.epochs_decay", 40)))
    cfg = grid.config("demo", "cyclegan", 0)
    folder = tmp_path / "sweep"
    import submitit

    ex = submitit.SlurmExecutor(folder / "jobs", max_num_timeout=3)
    ex.update_parameters(**RESOURCES.slurm("a2r:signal", []))
    job = ex.submit(sweep.TrainJob(grid, "demo", "cyclegan", 0, threads=RESOURCES.cpus))
    # what Slurm sends before the time limit (submitit asks for it with --signal=USR2@...)
    _signal_at(Run.of(cfg).dir / "losses.csv", 40, job,
               lambda: subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True))
    _release_requeued(slurm_cluster, job.job_id)
    deadline = time.time() + 600
    while not job.paths.result_pickle.exists():
        assert time.time() < deadline, job.paths.stderr.read_text()
        time.sleep(0.5)
    log = job.paths.stderr.read_text()
    assert job.result()["iterations"] == 320, log
    out = job.paths.stdout.read_text()  # submitit's own record of the requeue
    assert "Calling checkpoint method" in out and f"Requeued job {job.job_id}" in out, out
    assert "Restarts=1 " in slurm_cluster.run("scontrol", "show", "job", job.job_id)
    assert 40 <= _resumed_at(log) < 320
    assert same_weights(nets(Run.of(cfg)), straight_run(cfg, tmp_path / "straight"))


def _signal_at(losses: Path, iteration: int, job, send) -> None:
    """Call ``send`` once the run has logged ``iteration`` iterations (mid-training)."""
    deadline = time.time() + 300
    while not (losses.exists() and len(losses.read_text().splitlines()) > iteration):
        assert time.time() < deadline and not job.paths.result_pickle.exists(), job.paths.stderr.read_text()
        time.sleep(0.05)
    send()


def _resumed_at(log: str) -> int:
    """The iteration the single resume of a job's log started from."""
    resumed = [line for line in log.splitlines() if "resumed" in line and "from last.pt" in line]
    assert len(resumed) == 1, log
    return int(resumed[0].rsplit("iteration ", 1)[1])


def test_status_on_slurm_pending_running_failed_and_a_resubmission(slurm_cluster, tmp_path):
    """A training in flight is running and what waits for it pending; cancelled, it is failed and Slurm cancels
    its dependants; submitting again resubmits them, and once more keeps the jobs in flight."""
    grid = sweep.Grid(("demo",), ("cyclegan",), (0,), "smoke", (("train.epochs_constant", 200),))
    folder = tmp_path / "sweep"
    first = sweep.submit(grid, folder, "slurm", RESOURCES)
    train = first["jobs"]["demo/train/cyclegan/seed0"]["job_id"]
    deadline = time.time() + 120
    while (states := {r["job"]: r for r in sweep.status(folder)})["demo/train/cyclegan/seed0"]["state"] != "running":
        assert time.time() < deadline, states
        time.sleep(0.5)
    assert states["demo/translate"]["state"] == "pending" and "Dependency" in states["demo/translate"]["detail"]
    assert states["demo/tables"]["state"] == "pending"
    slurm_cluster.run("scancel", train)
    rows = sweep.wait(folder, timeout_s=120, poll_s=1)
    assert [(r["job"], r["state"]) for r in rows] == [("demo/train/cyclegan/seed0", "failed"),
                                                      ("demo/translate", "failed"), ("demo/tables", "failed")]
    assert "CANCELLED" in rows[0]["detail"] and "Dependency" in rows[1]["detail"], rows
    second = sweep.submit(grid, folder, "slurm", RESOURCES)
    assert [r["action"] for r in second["jobs"].values()] == ["run"] * 3
    third = sweep.submit(grid, folder, "slurm", RESOURCES)  # the second's jobs are in flight: kept, not doubled
    assert [r["action"] for r in third["jobs"].values()] == ["kept"] * 3
    assert [r["job_id"] for r in third["jobs"].values()] == [r["job_id"] for r in second["jobs"].values()]
    text = sweep.status_text(sweep.status(folder))
    assert "demo/train/cyclegan/seed0" in text and "log: " in text
    assert sweep.squeue(["999999"]) == {}  # a job Slurm has forgotten is no error (its result file decides)
    slurm_cluster.run("scancel", *[r["job_id"] for r in third["jobs"].values()])


# ---------------------------------------------------------------------------------------------------- local
def test_local_executor_runs_the_graph_in_order(small_demo, results, tmp_path):
    grid = sweep.Grid((str(small_demo),), ("cyclegan",), (0, 1), "smoke")
    folder = tmp_path / "sweep"
    sweep.submit(grid, folder, "local", sweep.Resources(gpus=0, time=30), parallel=2, poll_s=0.5)
    rows = sweep.status(folder)
    assert [r["state"] for r in rows] == ["done"] * 4, sweep.status_text(rows)
    fid = pd.read_csv(results / grid.key(str(small_demo)) / "table1_fid.csv").set_index("method")
    assert len(fid.loc["Cycle-GAN", "FID per seed"].split()) == 2
    assert sweep.to_run(grid) == {r["job"]: False for r in rows}


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def test_local_training_signalled_at_its_time_limit_restarts_and_resumes(tmp_path):
    """The local executor's time limit: its controller sends the job's task SIGUSR2 (sent here, at a known
    iteration); the job saves, exits for requeue, the controller restarts it and it resumes to the weights of an
    uninterrupted run."""
    import signal

    import submitit

    grid = sweep.Grid(("demo",), ("cyclegan",), (0,), "smoke", (("train.epochs_constant", 40),
                                                                ("train.epochs_decay", 40)))
    cfg = grid.config("demo", "cyclegan", 0)
    ex = submitit.LocalExecutor(tmp_path / "jobs", max_num_timeout=3)
    ex.update_parameters(timeout_min=30, gpus_per_node=0)
    job = ex.submit(sweep.TrainJob(grid, "demo", "cyclegan", 0, threads=1))
    _signal_at(Run.of(cfg).dir / "losses.csv", 40, job,
               lambda: [os.kill(pid, signal.SIGUSR2) for pid in _children(int(job.job_id))])
    summary = job.result()
    log = job.paths.stderr.read_text()
    assert summary["iterations"] == 320, log
    assert "Requeued job" in job.paths.stdout.read_text() and _resumed_at(log) >= 40, log
    straight = straight_run(cfg, tmp_path / "straight")
    assert same_weights(nets(Run.of(cfg)), straight)


def test_local_status_names_only_the_dependencies_not_done(tmp_path):
    jobs = {"s/banks": {"action": "done", "after": []},
            "s/train": {"action": "run", "after": ["s/banks"]},
            "s/tables": {"action": "run", "after": ["s/train"]}}
    manifest = {"executor": "local", "pid": os.getpid(), "jobs": jobs}
    assert sweep.job_state(tmp_path, manifest, "s/train") == ("pending", "waiting for a free slot (--parallel)")
    assert sweep.job_state(tmp_path, manifest, "s/tables") == ("pending", "waiting for s/train")
    manifest["pid"] = None  # the sweep process is gone: nothing will start them
    assert sweep.job_state(tmp_path, manifest, "s/tables")[0] == "failed"


def test_local_executor_with_no_slot_is_refused(tmp_path):
    grid = sweep.Grid(("demo",), ("cyclegan",), (0,), "smoke")
    with pytest.raises(ConfigError, match="--parallel must be at least 1"):
        sweep.submit(grid, tmp_path / "sweep", "local", parallel=0)
    assert not (tmp_path / "sweep").exists()


def test_local_jobs_share_the_machine_s_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert sweep._local_threads(8, 1) == 8 and sweep._local_threads(8, 4) == 4 and sweep._local_threads(2, 1) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert sweep._local_threads(8, 1) == 2 and sweep._local_threads(8, 3) == 1
