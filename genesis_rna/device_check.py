"""The prepared GPU check: one command on a CUDA machine proves the GPU path and trains the
real-data model there; ``--dry-run`` runs the same steps on CPU on the demo (the test suite
does, so the script cannot rot).

    # here (CPU, network): the split (needs MMseqs2), the data files and the wheels to carry
    python -m genesis_rna.device_check prepare [--configfile config/realdata_comparative.yaml]
    # there (CUDA, offline), from the repository root, with results/device_carry copied along
    python -m genesis_rna.device_check run --out OUT [--steps tests,bench,workflow]

``run`` installs the carried wheels (``<carry>/wheels``: what the machine lacks, e.g. ViennaRNA,
Biopython, Snakemake) into a private folder put on the children's PYTHONPATH, then, each step
under its share of ``--budget_s`` (one ``timeout`` for the whole; a failed step does not stop
the next):

tests     ``pytest -m cuda``: fp16 + GradScaler, bf16, the on-device data path, micro-batches
          and inference on CUDA (``tests/test_cuda.py``).
bench     ``bench train`` for each ``--bench_sizes`` (small, base): this model against the
          earlier padded-fp32 design on the same batches (nt/s, the ratio, MFU against the
          bf16 matmul measured there) and the trainer CLI with AST off and on (trained nt/s,
          MFU), with ``--bench_train_config`` (config/train_gpu.yaml).
workflow  the real-data pretrain -> fine-tune (``--configfile``, the comparative config with
          thermodynamic features) with the GPU trainer configs, via ``snakemake
          --allowed-rules`` from the carried split on (the split needs MMseqs2, prepared on CPU):
          fine-tune labels, thermo stage, packing, both trainings, evaluation on the test split,
          ArchiveII and VL0 against ViennaRNA MFE and MEA, plots, ``models.tsv``.

What comes back under ``--out`` (at most 8 files, flat): ``device_check.log`` (everything the
steps printed), ``summary.json`` (machine, each step's status and seconds, the bench rows,
the evaluation rows), ``report.md`` (the tables, also printed last), ``results.tar.gz``
(metrics CSVs, run configs, ``models.tsv``, evaluation summaries, plots, benchmarks of the
jobs) and ``genesis_rna_gpu.pt`` (the fine-tuned model, weights only in fp16:
``genesis_rna.shipped_model``). ``--dry-run``: CPU, tiny model, the demo config
(``config/config.yaml``), one epoch; the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = Path("results/device_carry")
SHARED_PREFIX = "../shared/data/"
STEPS = ("tests", "bench", "workflow")
# rules whose outputs are carried (the split needs MMseqs2, which the GPU machine lacks)
UPSTREAM_RULES = ("fetch_corpus", "parse_fasta", "scatter_sequences", "annotate_shard",
                  "gather_annotations", "split_dataset")
SPLIT_FILES = ("train.parquet", "val.parquet", "test.parquet", "removed.parquet",
               "split_report.json")
# what the carried wheels are for: the modules the steps import that a CUDA image with PyTorch
# usually lacks (KINDS.md of the lent machines); their dependencies come along (prepare)
WHEELS = ("ViennaRNA", "biopython", "snakemake")
# packages such an image already holds (and which must not be shadowed by a second version)
IMAGE_HAS = {"numpy", "pandas", "pyarrow", "matplotlib", "torch", "scipy", "pillow", "pyyaml",
             "jinja2", "markupsafe", "requests", "urllib3", "idna", "certifi",
             "charset_normalizer", "packaging", "psutil", "attrs", "tabulate", "wrapt", "tqdm",
             "fonttools", "kiwisolver", "contourpy", "cycler", "pyparsing", "python_dateutil",
             "six", "pytz", "tzdata", "typing_extensions", "setuptools", "platformdirs",
             "filelock", "fsspec", "sympy", "mpmath", "networkx", "triton", "pytest",
             "iniconfig", "pluggy", "pygments"}
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")


class Log:
    """Everything printed goes to stdout and to ``device_check.log`` under the output folder."""

    def __init__(self, path: Path):
        self.fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        self.fh.write(text + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _run(cmd: list[str], log: Log, timeout: float, env: dict | None = None,
         cwd: Path | None = None) -> tuple[int, float]:
    """Run ``cmd`` with its output streamed into the log; (exit status, seconds). A command
    past ``timeout`` is killed and reports 124, as coreutils' timeout does."""
    log(f"$ {' '.join(cmd)}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd, start_new_session=True)

    def pump() -> None:  # a thread, so the timeout holds while the child prints nothing
        assert proc.stdout is not None
        for line in proc.stdout:
            log(f"  {line.rstrip()}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and what it started (snakemake jobs)
        proc.wait()
        reader.join(timeout=5)
        log(f"  (killed after {timeout:.0f} s)")
        return 124, time.perf_counter() - t0
    reader.join(timeout=5)
    return proc.returncode, time.perf_counter() - t0


# ---------------------------------------------------------------------------- configuration
def remap_data(value, data_dir: str):
    """``value`` (a config section) with every ``../shared/data/`` path moved to ``data_dir``."""
    if isinstance(value, dict):
        return {k: remap_data(v, data_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [remap_data(v, data_dir) for v in value]
    if isinstance(value, str) and value.startswith(SHARED_PREFIX):
        return str(Path(data_dir) / value[len(SHARED_PREFIX):])
    return value


def carried_data_files(config: dict) -> list[str]:
    """The ``../shared/data`` files the rules after the split read: fine-tune structures and
    the evaluated benchmarks (the corpus and the decontamination sets feed the split only)."""
    files = [config.get("finetune", {}).get("structures")]
    files += list(config.get("evaluate", {}).get("benchmarks", {}).values())
    return [f for f in files if isinstance(f, str) and f.startswith(SHARED_PREFIX)]


def workflow_config(base: dict, *, results: str, data_dir: str, train_config: str,
                    finetune_config: str, train_epochs: int | None,
                    finetune_epochs: int | None, cores: int, ablations: bool) -> dict:
    """The base workflow config for a run on one GPU machine: results under ``results``,
    data from ``data_dir``, the given trainer configs and epochs, every stage's threads and
    shards set to ``cores``; without ``ablations`` only the fine-tune that ships (no scratch
    twin, no run without thermodynamic features)."""
    cfg = remap_data(json.loads(json.dumps(base)), data_dir)
    cfg["results"] = results
    cfg["train"] = {**cfg.get("train", {}), "config": train_config, "gpus": 1, "threads": cores,
                    "num_epochs": train_epochs}
    finetune = cfg.get("finetune", {})
    if finetune.get("structures"):
        cfg["finetune"] = {**finetune, "config": finetune_config, "num_epochs": finetune_epochs}
        if not ablations:
            cfg["finetune"].update(scratch_baseline=False, thermo_ablation=False)
    cfg["thermo"] = {**cfg.get("thermo", {}), "shards": cores, "threads": 1}
    cfg["evaluate"] = {**cfg.get("evaluate", {}), "threads": cores}
    return cfg


# ---------------------------------------------------------------------------- prepare (CPU)
# snakemake dependencies published as source only (pure Python): built into wheels here first
PURE_SDISTS = ("connection_pool>=0.0.3",)


def pinned(packages: list[str]) -> list[str]:
    """``packages`` pinned to the versions installed here (what the tests ran with), where
    installed and not pinned already."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for p in packages:
        try:
            out.append(p if any(c in p for c in "=<>") else f"{p}=={version(p)}")
        except PackageNotFoundError:
            out.append(p)
    return out


def download_wheels(dest: Path, packages: list[str], python: str = "3.12") -> list[str]:
    """Wheels of ``packages`` and their dependencies for the GPU machine (x86-64 manylinux,
    CPython ``python``), minus what its image already holds; returns the file names kept."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest),
                    *PURE_SDISTS], check=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "-d", str(dest),
           "--find-links", str(dest), *pinned(packages)]
    for plat in WHEEL_PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd, check=True)
    kept = []
    for wheel in sorted(dest.glob("*.whl")):
        name = wheel.name.split("-")[0].lower().replace("-", "_")
        if name in IMAGE_HAS:
            wheel.unlink()
        else:
            kept.append(wheel.name)
    return kept


def prepare(args: argparse.Namespace) -> int:
    import yaml

    base = yaml.safe_load(Path(args.configfile).read_text())
    results = Path(base.get("results", "results"))
    split = results / "split"
    if not all((split / f).exists() for f in SPLIT_FILES):
        cmd = [sys.executable, "-m", "snakemake", str(split / "split_report.json"), "--cores",
               str(args.cores), "--configfile", args.configfile]
        print(f"$ {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True)
    carry = Path(args.carry)
    (carry / "split").mkdir(parents=True, exist_ok=True)
    for f in SPLIT_FILES:
        shutil.copy2(split / f, carry / "split" / f)
    (carry / "data").mkdir(exist_ok=True)
    for f in carried_data_files(base):
        shutil.copy2(f, carry / "data" / f[len(SHARED_PREFIX):])
    if args.wheels:
        kept = download_wheels(carry / "wheels", list(args.wheels))
        print(f"wheels: {', '.join(kept)}")
    size = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file()) / 2**20
    print(f"{carry}: {size:.1f} MiB (the device tool carries 64 MiB with the working tree)\n"
          f"on the GPU machine, from the repository root:\n"
          f"  timeout {args.budget_s + 60} python3 -m genesis_rna.device_check run --carry "
          f"{carry} --configfile {args.configfile} --budget_s {args.budget_s} --out $OUT")
    return 0


# ---------------------------------------------------------------------------- run (GPU)
def install_wheels(wheels: Path, site: Path, log: Log) -> dict:
    """Install the carried wheels into ``site`` (no index, no dependency resolution: prepare
    brought the dependencies); the environment for the steps' children."""
    env = dict(os.environ)
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if found:
        code, _ = _run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                        *map(str, found)], log, timeout=300)
        if code != 0:
            raise SystemExit(f"installing the wheels of {wheels} failed (exit {code})")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(site), str(REPO), env.get("PYTHONPATH", "")) if p)
    else:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        log(f"no wheels in {wheels}: using what this Python has")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def machine(env: dict) -> dict:
    code = ("import json, torch, platform; print(json.dumps({'torch': torch.__version__, "
            "'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name(0) if "
            "torch.cuda.is_available() else None, 'gpus': torch.cuda.device_count(), "
            "'python': platform.python_version()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    info = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-500:]}
    info.update(cpus=os.cpu_count(), platform=platform.platform())
    return info


def step_tests(args, env, log, timeout) -> dict:
    junit = Path(args.work) / "pytest_cuda.xml"
    # only the files that hold cuda-marked tests: collecting the whole suite imports every
    # test module (minutes on a loaded CPU); the marker still selects within them
    files = sorted(str(p) for p in (REPO / "tests").glob("test_*.py")
                   if "mark.cuda" in p.read_text(encoding="utf-8"))
    code, secs = _run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p",
                       "no:cacheprovider", f"--junitxml={junit}", *files],
                      log, timeout, env=env, cwd=REPO)
    out = {"exit": code, "seconds": secs}
    if junit.exists():
        import xml.etree.ElementTree as ET

        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        if suite is not None:
            out.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors",
                                                            "skipped")})
    out["ok"] = code == 0 and out.get("tests", 0) > 0
    return out


def step_bench(args, env, log, timeout) -> dict:
    rows, codes, t_end = [], [], time.perf_counter() + timeout
    split = Path(args.carry) / "split"
    for size in args.bench_sizes.split(","):
        out = Path(args.work) / f"bench_{size}.json"
        code, _ = _run([sys.executable, "-m", "genesis_rna.bench", "train", "--split_dir",
                        str(split), "--model_size", size, "--device", args.device,
                        "--train_steps", str(args.bench_steps), "--train_rounds",
                        str(args.bench_rounds), "--train_batch", str(args.bench_batch),
                        "--bucket_multiple", str(args.bench_bucket), "--train_ast", "off,on",
                        "--train_config", args.bench_train_config, "--json", str(out)],
                       log, t_end - time.perf_counter(), env=env, cwd=Path.cwd())
        codes.append(code)
        if out.exists():
            rows += [{"model_size": size, **r} for r in json.loads(out.read_text())["results"]]
    return {"exit": max(codes), "ok": all(c == 0 for c in codes), "rows": rows}


def allowed_rules(env: dict, configfile: Path, log: Log) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", "--configfile",
                          str(configfile)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        log(out.stderr[-2000:])
        raise SystemExit("snakemake --list-rules failed")
    rules = [line.split()[0] for line in out.stdout.splitlines() if line.strip()
             and not line.startswith((" ", "\t"))]
    return [r for r in rules if r not in UPSTREAM_RULES]


def step_workflow(args, env, log, timeout) -> dict:
    import yaml

    base = yaml.safe_load(Path(args.configfile).read_text())
    results = Path(args.results)
    if results.exists():
        shutil.rmtree(results)
    (results / "split").mkdir(parents=True)
    for f in SPLIT_FILES:
        shutil.copy2(Path(args.carry) / "split" / f, results / "split" / f)
    cfg = workflow_config(base, results=str(results), data_dir=str(Path(args.carry) / "data"),
                          train_config=args.train_config, finetune_config=args.finetune_config,
                          train_epochs=args.train_epochs, finetune_epochs=args.finetune_epochs,
                          cores=args.cores, ablations=args.ablations)
    configfile = Path(args.work) / "device_workflow.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log(f"workflow config: {configfile}\n" + yaml.safe_dump(cfg, sort_keys=False))
    rules = allowed_rules(env, configfile, log)
    code, secs = _run([sys.executable, "-m", "snakemake", "--cores", str(args.cores),
                       "--resources", "gpu=1", "--configfile", str(configfile),
                       "--allowed-rules", *rules, "--rerun-incomplete", "--printshellcmds"],
                      log, timeout, env=env, cwd=Path.cwd())
    out: dict = {"exit": code, "seconds": secs, "ok": code == 0, "config": cfg}
    models = results / "evaluation" / "models.tsv"
    if models.exists():
        import pandas as pd

        out["models"] = pd.read_csv(models, sep="\t").to_dict("records")
    return out


def collect(args, summary: dict, log: Log) -> None:
    """results.tar.gz (tables, metrics, plots) and the fine-tuned model in fp16."""
    results, out = Path(args.results), Path(args.out)
    keep = [p for p in sorted(results.rglob("*")) if p.is_file() and (
        p.suffix in (".csv", ".tsv", ".json", ".png", ".yaml", ".log")
        and "checkpoints" not in p.parts and "packed" not in p.parts
        and "packed_data" not in p.parts and "thermo" not in p.parts[len(results.parts):][:1])]
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for p in keep:
            tar.add(p, arcname=str(p.relative_to(results.parent)))
        for p in sorted(Path(args.work).glob("*.json")) + [Path(args.work) / "device_workflow.yaml"]:
            if p.exists():
                tar.add(p, arcname=f"device_check/{p.name}")
    for run in ("finetune", "train"):
        model = results / run / "model.pt"
        if model.exists():
            from genesis_rna.shipped_model import export_model

            summary["exported"] = {"run": run, **export_model(model, out / "genesis_rna_gpu.pt")}
            log(f"exported {model} -> {out / 'genesis_rna_gpu.pt'}")
            break


def report(summary: dict) -> str:
    lines = [f"# device_check {'(dry run, CPU)' if summary['dry_run'] else ''}".rstrip(), "",
             f"machine: {json.dumps(summary['machine'])}", ""]
    for name, step in summary["steps"].items():
        extra = ""
        if name == "tests" and "tests" in step:
            extra = (f" ({step['tests']} tests, {step.get('failures', 0)} failed, "
                     f"{step.get('errors', 0)} errors, {step.get('skipped', 0)} skipped)")
        lines.append(f"- {name}: {'ok' if step.get('ok') else 'FAILED'}, exit "
                     f"{step.get('exit')}, {step.get('seconds', 0):.0f} s{extra}")
    bench = summary["steps"].get("bench", {}).get("rows", [])
    if bench:
        lines += ["", "| model | setup | nt/s | MFU (bf16 matmul) | notes |",
                  "| --- | --- | --- | --- | --- |"]
        for r in bench:
            if r["bench"] == "train" and "records_per_s" in r and r["records_per_s"]:
                mfu = r.get("mfu_vs_best_matmul")
                note = (f"speedup {r['speedup_vs_earlier_design']:.1f}x (median round)"
                        if "speedup_vs_earlier_design" in r else "")
                lines.append(f"| {r['model_size']} | {r['mode'].split(', batch')[0]} | "
                             f"{r['records_per_s']:,.0f} | {mfu:.1%} | {note} |")
            elif r["bench"] == "train_trainer":
                lines.append(f"| {r['model_size']} | {r['mode']} | "
                             f"{r['trained_nt_per_s']:,.0f} trained | "
                             f"{r.get('mfu_vs_bf16_matmul', 0):.1%} | activation "
                             f"{r['activation']:.2f}, {r['candidate_nt_per_s']:,.0f} candidate "
                             f"nt/s, batch {r['batch_size']}, {r['num_workers']} workers |")
            elif "bf16_gflop_per_s" in r:
                lines.append(f"| {r['model_size']} | {r['mode']} | | | bf16 "
                             f"{r['bf16_gflop_per_s'] / 1e3:.1f} TFLOP/s, fp32 "
                             f"{r['fp32_gflop_per_s'] / 1e3:.1f} TFLOP/s |")
    models = summary["steps"].get("workflow", {}).get("models")
    if models:
        lines += ["", "| run | data set | n | model F1 | ViennaRNA MFE | ViennaRNA MEA |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for m in models:
            def f(x):
                return "-" if x is None or x != x else f"{x:.3f}"
            lines.append(f"| {m['run']} | {m['dataset']} | {m['n']} | {f(m['model_f1'])} | "
                         f"{f(m['vienna_f1'])} | {f(m['vienna_mea_f1'])} |")
    if "exported" in summary:
        e = summary["exported"]
        lines += ["", f"model: {e['run']} -> genesis_rna_gpu.pt ({e['parameters']:,} parameters,"
                      f" {e['bytes'] / 1e6:.1f} MB fp16)"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    for key in ("out", "work", "results", "carry", "site"):  # children run in other folders
        setattr(args, key, str(Path(getattr(args, key)).resolve()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    log = Log(out / "device_check.log")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if bad := [s for s in steps if s not in STEPS]:
        raise SystemExit(f"--steps: {bad[0]!r} is not one of {STEPS}")
    env = install_wheels(Path(args.carry) / "wheels", Path(args.site), log)
    summary: dict = {"dry_run": args.dry_run, "machine": machine(env), "steps": {},
                     "args": {k: v for k, v in vars(args).items() if k != "func"}}
    log(f"machine: {json.dumps(summary['machine'])}")
    shares = {"tests": 0.15, "bench": 0.35, "workflow": 0.5}
    total_share = sum(shares[s] for s in steps)
    for k, name in enumerate(steps):
        left = args.budget_s - (time.perf_counter() - t_start) - 20  # keep time to collect
        later = sum(shares[s] for s in steps[k + 1:])
        budget = left * (1 - later / total_share) if k < len(steps) - 1 else left
        total_share -= shares[name]
        log(f"== {name} (budget {budget:.0f} s)")
        fn = {"tests": step_tests, "bench": step_bench, "workflow": step_workflow}[name]
        t0 = time.perf_counter()
        try:
            result = fn(args, env, log, max(budget, 10.0))
        except (SystemExit, Exception) as exc:  # one failed step does not stop the others
            result = {"ok": False, "exit": 1, "error": f"{type(exc).__name__}: {exc}"}
            log(f"{name} failed: {result['error']}")
        result.setdefault("seconds", time.perf_counter() - t0)
        summary["steps"][name] = result
    if "workflow" in steps:
        try:
            collect(args, summary, log)
        except Exception as exc:  # still write the summary
            log(f"collecting the results failed: {type(exc).__name__}: {exc}")
    summary["seconds"] = time.perf_counter() - t_start
    text = report(summary)
    (out / "report.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    log(text)
    log.close()
    return 0 if all(s.get("ok") for s in summary["steps"].values()) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genesis_rna.device_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare", help="here: the split, data files and wheels to carry")
    pr.add_argument("--configfile", default="config/realdata_comparative.yaml")
    pr.add_argument("--carry", default=str(CARRY))
    pr.add_argument("--cores", type=int, default=2)
    pr.add_argument("--wheels", nargs="*", default=list(WHEELS),
                    help="packages to carry as wheels with their dependencies (none: skip)")
    pr.add_argument("--budget_s", type=int, default=420)
    r = sub.add_parser("run", help="there: the CUDA tests, the benchmarks, the workflow")
    r.add_argument("--out", required=True, help="folder for what comes back ($OUT)")
    r.add_argument("--carry", default=str(CARRY))
    r.add_argument("--configfile", default="config/realdata_comparative.yaml")
    r.add_argument("--steps", default=",".join(STEPS))
    r.add_argument("--budget_s", type=float, default=420,
                   help="seconds for all steps (shares: tests 15%%, bench 35%%, workflow 50%%)")
    r.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="CPU, tiny model, the demo config: the same steps, minutes")
    r.add_argument("--device", default="cuda")
    r.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    r.add_argument("--results", default="results/device_run")
    r.add_argument("--work", default="results/device_work")
    r.add_argument("--site", default="/tmp/genesis_rna_site", help="where the wheels install")
    r.add_argument("--train_config", default="config/train_gpu.yaml")
    r.add_argument("--finetune_config", default="config/finetune_gpu.yaml")
    r.add_argument("--train_epochs", type=int, default=None, help="default: the config's")
    r.add_argument("--finetune_epochs", type=int, default=None, help="default: the config's")
    r.add_argument("--ablations", action="store_true",
                   help="also the scratch and no-thermo fine-tunes of the config")
    r.add_argument("--bench_sizes", default="small,base")
    r.add_argument("--bench_steps", type=int, default=8)
    r.add_argument("--bench_rounds", type=int, default=3)
    r.add_argument("--bench_batch", type=int, default=64)
    r.add_argument("--bench_bucket", type=int, default=32)
    r.add_argument("--bench_train_config", default="config/train_gpu.yaml")
    return p


DRY_RUN = {"device": "cpu", "configfile": "config/config.yaml", "cores": 2,
           "train_config": "config/train_cpu_demo.yaml",
           "finetune_config": "config/finetune_cpu_demo.yaml", "train_epochs": 1,
           "finetune_epochs": 1, "bench_sizes": "tiny", "bench_steps": 1, "bench_rounds": 1,
           "bench_batch": 8, "bench_bucket": 8, "bench_train_config": "config/train_cpu_demo.yaml"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare(args)
    if args.dry_run:  # the dry run's values, unless given on the command line
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:])
                 if a.startswith("--")}
        for key, value in DRY_RUN.items():
            if key not in given:
                setattr(args, key, value)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
