"""Faults real runs meet, injected for real: SIGKILL, concurrent runs, a full disk.

Each test runs the real CLI or ``snakemake`` in a subprocess, injects the fault from outside
(a signal to the process group, a second process, a file-size limit) and asserts what survives.
The faults already covered elsewhere are listed in tests/README.md.
"""

from __future__ import annotations

import csv
import errno
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO
from tests.train_fixtures import TINY_ARGS, make_splits
from tests.workflow_utils import SNAKEMAKE, copy_workflow, snakemake, write_config

TARGET = "results/split/split_report.json"
SHARDS = 4
# ~15 s of folding on 2 idle cores: long enough to kill mid-annotation, short enough for CI.
N_SEQUENCES = 600


def _corpus_config(workdir: Path, n: int, seed: int = 11) -> Path:
    """A random corpus big enough that folding it takes several seconds on 2 cores."""
    rng = random.Random(seed)
    with open(workdir / "corpus.fa", "w") as fh:
        for k in range(n):
            length = rng.randint(150, 250)
            fh.write(f">s{k}\n{''.join(rng.choice('ACGU') for _ in range(length))}\n")
    return write_config(workdir, {
        "corpus": {"source": "corpus.fa"},
        "annotate": {"shards": SHARDS, "threads": 1},
        "split": {"method": "random", "val_fraction": 0.1, "test_fraction": 0.1},
    })


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    """snakemake in its own session, so the whole process group (jobs too) can be killed."""
    return subprocess.Popen(
        [*SNAKEMAKE, "--cores", "2", "--configfile=test_config.yaml", *args], cwd=workdir,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


_SHARD = re.compile(r"shards/(\d+-of-\d+)\.annotations\.parquet")


def _jobs(log: str) -> dict[str, tuple[str, set[str]]]:
    """jobid -> (rule, shard names in its outputs), from Snakemake's job blocks."""
    jobs, rule, shards = {}, None, set()
    for line in log.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):$", line.strip()):
            rule, shards = m.group(1), set()
        elif line.strip().startswith("output:"):
            shards = set(_SHARD.findall(line))
        elif (m := re.match(r"jobid: (\d+)$", line.strip())) and rule:
            jobs[m.group(1)] = (rule, shards)
    return jobs


def _finished_shards(lines: list[str]) -> set[str]:
    """Shards whose annotate_shard job Snakemake reported as finished."""
    log = "".join(lines)
    jobs = _jobs(log)
    done = set()
    for jobid in re.findall(r"Finished jobid: (\d+) \(Rule: annotate_shard\)", log):
        done |= jobs[jobid][1]
    return done


def _rule_outputs(log: str, rule: str) -> set[str]:
    """Shards named in the outputs of the jobs of ``rule`` that a run started."""
    return set().union(*(s for r, s in _jobs(log).values() if r == rule))


def _mtime(workdir: Path, shard: str) -> int:
    return (workdir / "results" / "annotate" / "shards" / f"{shard}.annotations.parquet"
            ).stat().st_mtime_ns


def _sorted_rows(path: Path) -> list[tuple]:
    table = pq.read_table(path)
    return sorted(tuple(repr(v) for v in row.values()) for row in table.to_pylist())


def _planned_jobs(workdir: Path) -> dict[str, int]:
    """Rule -> job count of a dry run (parsed from Snakemake's summary table)."""
    proc = snakemake(workdir, "-n", "--quiet", "rules", "--configfile=test_config.yaml",
                     TARGET, timeout=120)
    jobs = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, during which a second snakemake tries the same folder (fault 7).

    Returns (workdir, the second run's CompletedProcess, the first run's output).
    """
    work = copy_workflow(tmp_path_factory.mktemp("reference"))
    _corpus_config(work, N_SEQUENCES)
    first = _start(work, TARGET)
    try:
        # Wait until the first run holds the lock and is running jobs.
        deadline = time.time() + 120
        while time.time() < deadline and not list((work / ".snakemake" / "locks").glob("*")):
            assert first.poll() is None, first.communicate()[0]
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        second = subprocess.run(
            [*SNAKEMAKE, "--cores", "2", "--configfile=test_config.yaml", TARGET], cwd=work,
            capture_output=True, text=True, timeout=120,
        )
        still_running = first.poll() is None
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert still_running, "the second run must be refused while the first is still running"
    assert first.returncode == 0, out
    return work, second, out


@pytest.mark.slow
def test_second_concurrent_snakemake_is_refused_and_first_completes(reference):
    work, second, _ = reference
    assert second.returncode != 0
    message = second.stdout + second.stderr
    assert "LockException" in message or "cannot be locked" in message, message
    # The first run's outputs are complete and consistent: nothing left to do, tables readable.
    assert _planned_jobs(work) == {}
    annotations = pq.read_table(work / "results" / "annotate" / "annotations.parquet")
    rejected = pq.read_table(work / "results" / "annotate" / "rejected.parquet")
    assert annotations.num_rows + rejected.num_rows == N_SEQUENCES
    assert not list((work / ".snakemake" / "locks").glob("*")), "the lock was not released"


@pytest.mark.slow
def test_sigkill_during_annotation_reruns_only_unfinished_shards(reference, tmp_path):
    ref_work, _, _ = reference
    work = copy_workflow(tmp_path)
    _corpus_config(work, N_SEQUENCES)
    run = _start(work, TARGET)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not _finished_shards(lines):
            if run.poll() is not None:
                reader.join(5)
                pytest.fail("the run ended before a shard finished:\n" + "".join(lines))
            time.sleep(0.01)
        os.killpg(run.pid, signal.SIGKILL)  # snakemake and every job it started
    finally:
        run.wait()
        reader.join(10)
    # Shards Snakemake recorded as finished before it died (their outputs are complete).
    finished = _finished_shards(lines)
    assert 1 <= len(finished) < SHARDS, f"kill was not mid-annotation: {sorted(finished)}"
    assert not (work / "results" / "annotate" / "annotations.parquet").exists()
    mtimes = {name: _mtime(work, name) for name in finished}

    # A SIGKILLed snakemake cannot release its lock; Snakemake's documented remedy is --unlock.
    locked = snakemake(work, "--configfile=test_config.yaml", TARGET, check=False, timeout=120)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    snakemake(work, "--unlock", "--configfile=test_config.yaml", timeout=120)
    plan = _planned_jobs(work)
    assert plan.get("annotate_shard") == SHARDS - len(finished), (plan, finished)
    assert "scatter_sequences" not in plan and "parse_fasta" not in plan, plan

    rerun = snakemake(work, "--configfile=test_config.yaml", TARGET, timeout=300)
    redone = _rule_outputs(rerun.stdout + rerun.stderr, "annotate_shard")
    all_shards = {f"{k}-of-{SHARDS}" for k in range(1, SHARDS + 1)}
    assert redone == all_shards - finished, (redone, finished)
    for name, mtime in mtimes.items():
        assert _mtime(work, name) == mtime, f"finished shard {name} was rewritten"

    for table in ("annotations.parquet", "rejected.parquet"):
        got = _sorted_rows(work / "results" / "annotate" / table)
        want = _sorted_rows(ref_work / "results" / "annotate" / table)
        assert got == want, table


# -- Fault 5: the disk fills up (a file-size limit) while a stage writes its outputs --------

def _limit_file_size(limit: int):
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG (SIGXFSZ ignored, not fatal)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _random_fasta(path: Path, kept: int, rejected: int, seed: int = 3) -> Path:
    """``kept`` random sequences (a few exact duplicates) and ``rejected`` gap-only records
    with long incompressible ids, so either table can be made the one that overflows."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for k in range(kept):
            seq = "".join(rng.choice("ACGU") for _ in range(rng.randint(40, 400)))
            fh.write(f">r{k}\n{seq}\n" + (f">dup{k}\n{seq}\n" if k % 10 == 0 else ""))
        for _ in range(rejected):
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(120))
            fh.write(f">{name}\n{'-' * 30}\n")
    return path


@pytest.mark.parametrize(("kept", "rejected", "row_group", "limit"), [
    (3000, 600, 500, 4_096),  # the first row group of either table
    (3000, 600, 500, 250_000),  # mid-way through the kept sequences
    (40, 3000, 500, 100_000),  # mid-way through the rejected table
    # Row groups larger than the input: sequences.parquet is renamed into place first, then
    # the rejected table fails on close; the placed file must be removed again.
    (40, 3000, 100_000, 100_000),
])
def test_parse_stage_under_a_full_disk_leaves_no_outputs(tmp_path, kept, rejected, row_group,
                                                         limit):
    fasta = _random_fasta(tmp_path / "in.fa", kept, rejected)
    out = tmp_path / "out"
    out.mkdir()
    finals = [out / "sequences.parquet", out / "rejected.parquet", out / "stats.json"]
    proc = subprocess.run(
        [sys.executable, "-m", "genesis_rna.fasta", str(fasta), "--sequences", str(finals[0]),
         "--rejected", str(finals[1]), "--stats", str(finals[2]), "--row_group_size",
         str(row_group), "--no_progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size(limit),
    )
    assert proc.returncode != 0
    assert os.strerror(errno.EFBIG) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [], "outputs or temp files were left behind"


_STREAM_WRITER_SCRIPT = """
import sys
from genesis_rna.tables import REJECTED, ParquetStreamWriter
try:
    with ParquetStreamWriter(sys.argv[1], REJECTED, row_group_size=10**6) as writer:
        for k in range(20000):
            writer.write({"id": f"id{k}-" + "x" * 50, "line": k, "reason": f"reason {k}"})
except OSError as exc:
    kept_alive = exc  # holds the frames, so nothing is cleaned up by garbage collection
    import os
    print(sorted(os.listdir(os.path.dirname(sys.argv[1]))))
    sys.exit(3)
"""


def test_stream_writer_failing_on_close_removes_its_temp_file(tmp_path):
    """The footer/last row group fails under the limit: the temp file goes at once, not at GC."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", _STREAM_WRITER_SCRIPT, str(out / "rejected.parquet")], cwd=REPO,
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size(50_000),
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory) -> Path:
    return make_splits(tmp_path_factory.mktemp("splits"))


def _train(data: Path, out: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "genesis_rna.train_pretrain", "--data_path", str(data),
         "--output_dir", str(out), "--num_epochs", "1", "--save_every_steps", "2", *TINY_ARGS],
        cwd=REPO, capture_output=True, text=True, timeout=180, **kwargs,
    )


@pytest.fixture(scope="module")
def full_disk_training(tiny_splits, tmp_path_factory):
    """A training run whose first checkpoint (~1.3 MB, tiny model) meets a 400 kB size limit."""
    out = tmp_path_factory.mktemp("full_disk_training") / "out"
    return out, _train(tiny_splits, out, preexec_fn=_limit_file_size(400_000))


def test_checkpoint_write_under_a_full_disk_leaves_no_checkpoint(full_disk_training,
                                                                  tiny_splits):
    out, proc = full_disk_training
    assert proc.returncode != 0
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert not [name for name in left if name.endswith(".pt") or ".tmp" in name], left
    # The next run (disk freed) starts cleanly and writes a loadable final checkpoint.
    rerun = _train(tiny_splits, out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed from" not in rerun.stdout
    assert (out / "model.pt").is_file()


def test_checkpoint_write_under_a_full_disk_says_so(full_disk_training):
    _, proc = full_disk_training
    assert os.strerror(errno.EFBIG) in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


# -- Fault 6: the loss turns NaN/Inf -----------------------------------------------------------
# No data-only poison exists (sequences are tokenized into a closed vocabulary), so the fault is
# injected through the optimizer: a learning rate of 1e30 blows the weights up after the first
# update and every later loss is non-finite. No trainer code is touched.

def _diverging(data: Path, out: Path, max_nonfinite: int) -> subprocess.CompletedProcess:
    args = [a for a in TINY_ARGS]
    args[args.index("--learning_rate") + 1] = "1e30"
    args[args.index("--warmup_steps") + 1] = "0"
    return subprocess.run(
        [sys.executable, "-m", "genesis_rna.train_pretrain", "--data_path", str(data),
         "--output_dir", str(out), "--num_epochs", "1", "--max_nonfinite_steps",
         str(max_nonfinite), *args],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )


def test_nonfinite_loss_steps_are_skipped_logged_and_counted(tiny_splits, tmp_path):
    out = tmp_path / "out"
    proc = _diverging(tiny_splits, out, max_nonfinite=100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                if "non-finite loss or gradient" in ln and "step skipped" in ln]
    assert warnings, proc.stdout + proc.stderr
    with open(out / "training_metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    train = [r for r in rows if r["phase"] == "train"]
    assert sum(int(r["nonfinite_steps"]) for r in train) == len(warnings)


def test_persistent_nonfinite_loss_stops_training_clearly(tiny_splits, tmp_path):
    out = tmp_path / "out"
    proc = _diverging(tiny_splits, out, max_nonfinite=2)
    assert proc.returncode != 0
    assert "max_nonfinite_steps=2" in proc.stderr and "diverged" in proc.stderr, proc.stderr
    assert not (out / "model.pt").exists(), "a diverged run must not look finished"
