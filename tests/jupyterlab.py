"""A JupyterLab server for browser tests, isolated from the user's Jupyter and from the repository's outputs.

The server runs from this Python (the kit's venv) with its own config, data, runtime, settings and workspace
folders in a temp folder, so neither user settings nor user kernelspecs leak in; its kernels import ``art2real``
from this checkout and write results and caches to temp folders. Settings can be changed between page loads:
the server reads the user settings files on every request.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60

# Settings every page load gets: nothing that pops up or reaches the network on its own.
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
    # Every cell in the DOM, so outputs below the fold can be counted (the default hides or drops them).
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab; ``stop()`` shuts down its kernels and the server."""

    process: subprocess.Popen
    base_url: str
    token: str
    root: Path
    home: Path  # everything the server writes: settings, workspaces, checkpoints, runtime files, its log

    def log(self) -> str:
        return (self.home / "jupyterlab.log").read_text(errors="replace")

    def url(self, path: str, **query: str) -> str:
        """The URL of a lab path such as ``tree/00_data.ipynb``, with the token."""
        params = "".join(f"&{k}" + (f"={v}" if v else "") for k, v in query.items())
        return f"{self.base_url}/lab/{path}?token={self.token}{params}"

    def api(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def set_settings(self, plugin: str, values: dict) -> None:
        """User settings of one plugin (``@jupyterlab/docmanager-extension:plugin``); used from the next page load."""
        package, name = plugin.split(":")
        path = self.home / "settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**QUIET_SETTINGS.get(plugin, {}), **values}, indent=2))

    def kernels(self) -> list[dict]:
        return self.api("GET", "/api/kernels")

    def shutdown_kernels(self) -> None:
        for kernel in self.kernels():
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.shutdown_kernels()
                self.api("POST", "/api/shutdown")  # stops its kernels, then the server
                self.process.wait(timeout=15)
            except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and any kernel it left behind
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        try:  # kernels are in the server's process group; none may outlive the test
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_lab(root: Path, home: Path, env: dict[str, str] | None = None) -> Lab:
    """JupyterLab on 127.0.0.1 at a free port serving ``root``; everything it writes goes under ``home``."""
    port, token = free_port(), secrets.token_hex(16)
    names = ("config", "data", "runtime", "ipython", "settings", "workspaces", "checkpoints")
    dirs = {name: home / name for name in names}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    kernel_env = {**os.environ,
                  "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
                  "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "IPYTHONDIR": str(dirs["ipython"]),
                  # the kernel runs in root (notebooks/): it must import art2real from this checkout
                  "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
                  **(env or {})}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={dirs['settings']}",
               f"--LabApp.workspaces_dir={dirs['workspaces']}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               # checkpoints (made on opening) go to the temp folder, not to root/.ipynb_checkpoints
               f"--FileCheckpoints.checkpoint_dir={dirs['checkpoints']}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    with open(home / "jupyterlab.log", "wb") as out:
        process = subprocess.Popen(command, env=kernel_env, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                   start_new_session=True)  # its own process group: stop() can end its kernels
    lab = Lab(process, f"http://127.0.0.1:{port}", token, root, home)
    for plugin, values in QUIET_SETTINGS.items():
        lab.set_settings(plugin, values)
    _wait_ready(lab)
    return lab


def _wait_ready(lab: Lab) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {lab.process.returncode}:\n{lab.log()[-3000:]}")
        try:
            lab.api("GET", "/api/status")
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.3)
    lab.stop()
    raise RuntimeError(f"JupyterLab did not answer within {START_TIMEOUT_S} s:\n{lab.log()[-3000:]}")
