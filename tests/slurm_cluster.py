"""A real single-node SLURM cluster on localhost for workflow tests (root, no systemd).

Debian's munged, slurmctld and slurmd run as child processes of the test and are stopped by PID.
The node offers two CPUs and one fake GPU (``Gres=gpu:1`` backed by ``/dev/null``, since slurmd
drops a GPU gres without ``File=``), in two partitions named like the ones in
``workflow/profiles/slurm`` (``cpu``, the default, and ``gpu``), so the profile runs unchanged.

Why the setup looks the way it does:
- slurmd runs *configless* (it fetches slurm.conf from slurmctld). The executor plugin starts each
  rule with ``srun`` inside the batch job and strips every ``SLURM_*`` variable, ``SLURM_CONF``
  included, from that srun's environment; srun then finds the config through the copy slurmd
  caches and links at ``/run/slurm/conf``.
- Fetching that config needs munge on its default socket (``/run/munge/munge.socket.2``), so
  munged listens there, as the ``munge`` user, with a key made for this cluster (or the running
  munged is reused when one answers already).
- No accounting (``accounting_storage/none``): ``sacct`` cannot report job states, so the
  workflow's status checks go through ``squeue``; ``MinJobAge=3600`` keeps finished jobs visible
  to squeue and ``scontrol show job`` for the whole test session (a loaded machine stretched
  the killed-and-resumed runs past 300 s, and the first jobs' records were gone).
- ``SlurmdParameters=config_overrides`` lets the node declare more memory than the machine has,
  so the profile's memory requests (meant for real clusters) are schedulable here; nothing
  enforces them (no cgroups).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")
NODE = "localhost"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
CONF_LINK = Path("/run/slurm/conf")  # where slurmd links its configless cache
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
INSTALL_HINT = (
    "apt-get install -y slurmctld slurmd slurm-client munge && "
    "pip install snakemake-executor-plugin-slurm"
)


def skip_unless_slurm_available() -> None:
    """Skip (with the reason) where a local test cluster cannot be brought up."""
    missing = [name for name in DAEMONS + CLIENTS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"SLURM/munge not installed (missing {', '.join(missing)}): {INSTALL_HINT}")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip(f"snakemake-executor-plugin-slurm is not installed: {INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM test cluster runs its daemons as root")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        pytest.skip("no 'munge' user (the munge package creates it)")
    if SYSTEM_CONF.exists():
        # srun inside jobs would read the machine's own cluster config instead of ours.
        pytest.skip(f"{SYSTEM_CONF} exists: this machine belongs to another SLURM cluster")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_conf(root: Path, ctld_port: int, slurmd_port: int) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""\
ClusterName=genesis-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmctldParameters=enable_configless
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
KillWait=5
GresTypes=gpu
NodeName={NODE} NodeAddr=127.0.0.1 CPUs=2 RealMemory=256000 Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={NODE} Default=NO MaxTime=INFINITE State=UP
"""


def parse_scontrol(text: str) -> dict[str, str]:
    """``Key=Value`` pairs of ``scontrol show job -d`` output (values without spaces)."""
    record: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key not in record:
            record[key] = value
    return record


@dataclass
class SlurmCluster:
    """A running local cluster: its config folder and the environment its clients need."""

    root: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *cmd: str, timeout: float = 30) -> str:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (MinJobAge): id, state, comment (rule) and name."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%j")
        rows = []
        for line in out.splitlines():
            jobid, state, comment, name = line.split("|", 3)
            rows.append({"id": jobid, "state": state, "comment": comment, "name": name})
        return rows

    def job_record(self, jobid: str) -> dict[str, str]:
        return parse_scontrol(self.run("scontrol", "show", "job", "-d", jobid))

    def wait_for_state(self, jobid: str, states: set[str], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_record(jobid).get("JobState", "")
            if state in states:
                return state
            time.sleep(0.5)
        raise TimeoutError(f"SLURM job {jobid} is {state!r}, not in {states} after {timeout}s")

    def logs(self) -> str:
        """Daemon logs, for failure messages."""
        parts = []
        for path in sorted((self.root / "log").iterdir()):
            parts.append(f"--- {path.name} ---\n" + "\n".join(path.read_text().splitlines()[-30:]))
        return "\n".join(parts)


def _munge_answers(env: dict[str, str]) -> bool:
    if not MUNGE_SOCKET.exists():
        return False
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5, env=env)
        check = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5,
                               env=env)
    except subprocess.TimeoutExpired:
        return False
    return cred.returncode == 0 and check.returncode == 0


def _start_munged(root: Path, cluster: SlurmCluster) -> None:
    """munged as the munge user on the default socket, with a key made for this cluster."""
    if _munge_answers(cluster.env):
        return  # a munged already serves this machine; slurm only needs one that answers
    user = pwd.getpwnam("munge")
    keydir = root / "munge"
    keydir.mkdir(mode=0o700)
    key = keydir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (keydir, key):
        os.chown(path, user.pw_uid, user.pw_gid)
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    os.chown(MUNGE_SOCKET.parent, user.pw_uid, user.pw_gid)
    MUNGE_SOCKET.parent.chmod(0o755)
    _spawn(cluster, "munged",
           ["munged", "--foreground", "--force", f"--key-file={key}",
            f"--pid-file={keydir}/munged.pid", f"--log-file={keydir}/munged.log",
            f"--seed-file={keydir}/munged.seed"],
           user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    _wait(lambda: _munge_answers(cluster.env), 15, "munged did not answer", cluster)


def _spawn(cluster: SlurmCluster, name: str, cmd: list[str], **kwargs) -> None:
    """Start a daemon in the foreground as a child in its own session; stderr to log/NAME.out."""
    with open(cluster.root / "log" / f"{name}.out", "w") as out:
        cluster.processes[name] = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **kwargs)


def _wait(ready, timeout: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{cluster.logs()}")
        if ready():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} within {timeout}s\n{cluster.logs()}")


def _node_idle(cluster: SlurmCluster) -> bool:
    proc = subprocess.run(["sinfo", "--noheader", "--nodes", NODE, "--format=%t"],
                          env=cluster.env, capture_output=True, text=True, timeout=10)
    return proc.returncode == 0 and proc.stdout.split()[:1] == ["idle"]


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def _cancel_all_jobs(cluster: SlurmCluster) -> None:
    """Jobs left over by a failed test: cancel them so no job step outlives its slurmd."""
    try:
        active = [j["id"] for j in cluster.jobs() if j["state"] in ("PENDING", "RUNNING",
                                                                   "CONFIGURING", "COMPLETING")]
        if active:
            cluster.run("scancel", *active)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(
                    j["state"] in ("RUNNING", "COMPLETING") for j in cluster.jobs()):
                time.sleep(0.5)
    except (RuntimeError, subprocess.TimeoutExpired):
        pass  # the controller is already gone; the daemons are stopped next regardless


@contextmanager
def local_slurm_cluster() -> Iterator[SlurmCluster]:
    """Bring the cluster up, wait until the node is idle, yield it, stop the daemons by PID."""
    skip_unless_slurm_available()
    # Not pytest's tmp_path: that folder is private to root, and munged (as 'munge') must reach
    # its key below this one.
    root = Path(tempfile.mkdtemp(prefix="genesis-slurm-", dir="/tmp"))
    root.chmod(0o755)
    for sub in ("state", "log", f"spool/{NODE}"):
        (root / sub).mkdir(parents=True)
    ctld_port, slurmd_port = _free_port(), _free_port()
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, ctld_port, slurmd_port))
    (root / "gres.conf").write_text(f"NodeName={NODE} Name=gpu File=/dev/null\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_"))]:
        if var != "SLURM_CONF":
            del env[var]  # settings of an outer SLURM job must not leak into this cluster
    cluster = SlurmCluster(root=root, env=env)
    try:
        _start_munged(root, cluster)
        if CONF_LINK.is_symlink() and not CONF_LINK.resolve().exists():
            CONF_LINK.unlink()  # left behind by a slurmd that was killed
        _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-f", str(conf)], env=env)
        _wait(lambda: subprocess.run(["scontrol", "ping"], env=env, capture_output=True,
                                     timeout=10).returncode == 0,
              30, "slurmctld did not answer", cluster)
        slurmd_env = {k: v for k, v in env.items() if k != "SLURM_CONF"}
        _spawn(cluster, "slurmd",
               ["slurmd", "-D", "-N", NODE, "--conf-server", f"127.0.0.1:{ctld_port}"],
               env=slurmd_env)
        _wait(lambda: _node_idle(cluster), 60, f"node {NODE} did not become idle", cluster)
        yield cluster
    finally:
        if "slurmctld" in cluster.processes:
            _cancel_all_jobs(cluster)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in cluster.processes:
                _stop(cluster.processes[name])
        if CONF_LINK.is_symlink() and str(CONF_LINK.resolve()).startswith(str(root)):
            CONF_LINK.unlink()
        shutil.rmtree(root, ignore_errors=True)
