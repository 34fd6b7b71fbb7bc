"""A private single-node Slurm cluster on this machine, for the tests and the benchmark.

munged, slurmctld and slurmd (Debian's ``slurm-wlm``) run as root from a temporary directory:
their own munge key and socket, a ``slurm.conf`` with private ports, state, spool and logs in
that directory, no accounting (so no ``sacct``), the scheduler tuned to start jobs every second.
Clients reach it through ``SLURM_CONF`` (:attr:`SlurmCluster.env`). Nothing outside the
directory is touched; :meth:`SlurmCluster.stop` cancels every job and stops the three daemons
by the pids in their pid files.

``python tests/slurm_cluster.py DIR`` starts one and prints ``export SLURM_CONF=...``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

DAEMONS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "squeue", "scancel", "sinfo")


def missing_commands() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None]


def unavailable_reason(install: bool = True) -> str | None:
    """Why a private cluster cannot run here, or None. With ``install``, as root with apt,
    Debian's ``slurm-wlm`` and ``munge`` are installed first when missing."""
    if missing_commands() and install and os.geteuid() == 0 and shutil.which("apt-get"):
        install_cmd = ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]
        if _quiet(install_cmd) != 0:
            _quiet(["apt-get", "update", "-qq"])
            _quiet(install_cmd)
    missing = missing_commands()
    if missing:
        return (
            f"Slurm is not installed ({', '.join(missing)} missing) and could not be "
            "installed (needs root and apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        return "a private Slurm cluster needs root (SlurmUser=root, munged)"
    return None


def _quiet(argv: list[str]) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    return done.returncode


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SlurmCluster:
    """``cpus`` CPUs on one node named after this host. ``overcommit``: the node claims that
    many CPUs (slurmd told to trust the configuration), so no-op jobs start that many at
    a time, for the benchmark."""

    def __init__(
        self,
        directory: Path,
        *,
        cpus: int = 2,
        max_array_size: int = 10001,
        min_job_age: int = 5,
        overcommit: int | None = None,
    ) -> None:
        self.dir = directory
        self.cpus = overcommit or cpus
        self.overcommit = overcommit is not None
        self.max_array_size = max_array_size
        self.min_job_age = min_job_age
        self.host = socket.gethostname().split(".")[0]
        self.conf = directory / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._started: list[str] = []

    # files ---------------------------------------------------------------------------------
    def _write_config(self) -> None:
        d = self.dir
        for sub in ("state", "spool", "log", "munge"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        ctld_port, slurmd_port = _free_ports(2)
        settings = {
            "ClusterName": "orchestra-test",
            "SlurmctldHost": self.host,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": slurmd_port,
            "AuthType": "auth/munge",
            "AuthInfo": f"socket={d}/munge/munge.sock",
            "StateSaveLocation": f"{d}/state",
            "SlurmdSpoolDir": f"{d}/spool",
            "SlurmctldPidFile": f"{d}/slurmctld.pid",
            "SlurmdPidFile": f"{d}/slurmd.pid",
            "SlurmctldLogFile": f"{d}/log/slurmctld.log",
            "SlurmdLogFile": f"{d}/log/slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "SchedulerType": "sched/builtin",
            "SchedulerParameters": "sched_interval=1,sched_min_interval=0,"
            "default_queue_depth=10000,batch_sched_delay=0,partition_job_depth=0",
            "MaxArraySize": self.max_array_size,
            "MaxJobCount": 100000,
            "MinJobAge": self.min_job_age,
            "KillWait": 2,
            "ReturnToService": 2,
            "MpiDefault": "none",
        }
        if self.overcommit:
            settings["SlurmdParameters"] = "config_overrides"
        lines = [f"{key}={value}" for key, value in settings.items()]
        lines.append(f"NodeName={self.host} CPUs={self.cpus} State=UNKNOWN")
        lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    # lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> SlurmCluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        munge = self.dir / "munge"
        munge.chmod(0o700)
        key = munge / "munge.key"
        if not key.exists():
            self._run("mungekey", "-c", "-k", str(key))
        key.chmod(0o600)
        self._run(
            "munged",
            f"--socket={munge}/munge.sock",
            f"--key-file={key}",
            f"--pid-file={munge}/munged.pid",
            f"--log-file={munge}/munged.log",
            f"--seed-file={munge}/munged.seed",
            "--force",
        )
        self._started.append(f"{munge}/munged.pid")
        try:
            self._run("slurmctld", "-f", str(self.conf))
            self._started.append(f"{self.dir}/slurmctld.pid")
            self._run("slurmd", "-f", str(self.conf))
            self._started.append(f"{self.dir}/slurmd.pid")
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            done = self._run("sinfo", "-h", "-o", "%T", check=False)
            state = (done.stdout or done.stderr).strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"the private Slurm cluster in {self.dir} did not come up in {timeout:.0f} s "
            f"(sinfo: {state!r}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for log in (self.dir / "log" / "slurmctld.log", self.dir / "log" / "slurmd.log"):
            with contextlib.suppress(OSError):
                text = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def jobs(self) -> list[str]:
        done = self._run("squeue", "-h", "-r", "-o", "%i|%T", check=False)
        return [line for line in done.stdout.splitlines() if line.strip()]

    def cancel_all(self, wait: float = 10.0) -> None:
        ids = [line.split("|")[0] for line in self.jobs()]
        if ids:
            self._run("scancel", *ids, check=False)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(
            not line.endswith(("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"))
            for line in self.jobs()
        ):
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged (by their pid files)."""
        if f"{self.dir}/slurmctld.pid" in self._started:
            with contextlib.suppress(Exception):
                self.cancel_all()
        for pid_file in reversed(self._started):
            _stop_pid_file(Path(pid_file))
        self._started.clear()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _stop_pid_file(path: Path, grace: float = 5.0) -> None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    reason = unavailable_reason()
    if reason:
        raise SystemExit(reason)
    cluster = SlurmCluster(Path(sys.argv[1]).resolve()).start()
    print(f"export SLURM_CONF={cluster.conf}")
