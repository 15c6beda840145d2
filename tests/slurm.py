"""A real one-node Slurm cluster for tests: Debian's slurm-wlm and munge (`scripts/apt_ensure.sh slurm-wlm munge`),
started as root in a temporary folder and stopped afterwards, whatever the tests did.

Everything is private to the folder, so nothing of the machine's own configuration is read or changed and two
test sessions can run side by side: its own munge key, socket and daemon; a slurm.conf with free ports, pointed
at by ``SLURM_CONF``; slurmctld and slurmd with their state, spool, PID and log files there. Teardown cancels the
jobs, stops the daemons by PID, then ends by PID any process still carrying this cluster's ``SLURM_CONF`` in its
environment (job steps), so no daemon outlives the tests.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")


def slurm_missing() -> str | None:
    """Why a Slurm test cannot run here, or None."""
    if os.geteuid() != 0:
        return "the one-node Slurm cluster needs root (slurmd runs jobs as their user)"
    for tool in (*DAEMONS, "sbatch", "squeue", "scancel", "scontrol", "srun"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not found: run `scripts/apt_ensure.sh slurm-wlm munge` as root"
    return None


@dataclass
class Cluster:
    folder: Path
    conf: Path
    env: dict
    pids: dict

    def run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if check and out.returncode:
            raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def jobs(self) -> dict[str, tuple[str, str]]:
        """{job id: (state, reason)} of every job the controller lists."""
        rows = [line.split("|") for line in self.run("squeue", "-h", "--states=all", "-o", "%i|%T|%r").splitlines()]
        return {r[0]: (r[1], r[2]) for r in rows if len(r) == 3}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.folder / "log").glob("*")))


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _config(folder: Path, host: str, cpus: int) -> str:
    ctld, slurmd = _free_ports(2)
    return "\n".join([
        "ClusterName=a2rtest", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld}", f"SlurmdPort={slurmd}",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={folder}/munge/munge.sock",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "SlurmUser=root", "SlurmdUser=root", "MpiDefault=none",
        f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/log/slurmctld.log", f"SlurmdLogFile={folder}/log/slurmd.log",
        "ReturnToService=2", "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "SchedulerType=sched/builtin", "KillWait=5", "MinJobAge=600",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


def _pid(path: Path, timeout: float = 10) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip().isdigit():
            return int(path.read_text())
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear: the daemon did not start")


def start_cluster(folder: Path) -> Cluster:
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(parents=True)
    os.chmod(folder / "munge", 0o711)  # munged refuses a socket folder others can write to
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    host = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, host, os.cpu_count() or 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(folder, conf, env, {})
    m = folder / "munge"
    subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={m}/munge.sock",
                    f"--pid-file={m}/munged.pid", f"--log-file={folder}/log/munged.log",
                    f"--seed-file={m}/munged.seed"], env=env, check=True, timeout=30)
    cluster.pids["munged"] = _pid(m / "munged.pid")
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon], env=env, check=True, timeout=30)
        cluster.pids[daemon] = _pid(folder / f"{daemon}.pid")
    deadline = time.time() + 30
    while "idle" not in cluster.run("sinfo", "-h", "-o", "%t", check=False):
        if time.time() > deadline:
            raise RuntimeError("the Slurm node did not become idle:\n" + cluster.logs())
        time.sleep(0.3)
    return cluster


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, 10):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(pid, 5)


def _processes_of(conf: Path) -> list[int]:
    """PIDs of processes whose environment names this cluster's slurm.conf (its job steps and their tasks)."""
    marker = f"SLURM_CONF={conf}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


PID_FILES = ("slurmd.pid", "slurmctld.pid", "munge/munged.pid")


def stop_cluster(folder: Path) -> None:
    """Cancel the jobs, stop the daemons by the PIDs they wrote, then any job step left (also after a start that
    failed half-way)."""
    conf = folder / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True, timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline and subprocess.run(
                ["squeue", "-h", "-t", "RUNNING,COMPLETING,CONFIGURING", "-o", "%i"], env=env, capture_output=True,
                text=True, timeout=30).stdout.strip():
            time.sleep(0.5)
    except Exception:  # noqa: BLE001  a broken controller must not keep the daemons alive
        pass
    for name in PID_FILES:
        path = folder / name
        if path.exists() and path.read_text().strip().isdigit():
            _stop(int(path.read_text()))
    for pid in _processes_of(conf):
        _stop(pid)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster (``Cluster``); ``SLURM_CONF`` points at it for the module's tests."""
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="a2r-slurm-"))
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster = start_cluster(folder)
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        stop_cluster(folder)
        shutil.rmtree(folder, ignore_errors=True)
