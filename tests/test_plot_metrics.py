"""plot_metrics: validated CSV in, four readable PNGs out, AST target taken from the run config."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml

from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.metrics_logger import COLUMNS, MetricsLogger
from genesis_rna.plot_metrics import (
    OUTPUT_NAMES,
    activation_target,
    find_key,
    plot_metrics,
    read_metrics,
    run_title,
    schedule_label,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


def metric_rows(n_epochs: int, steps_per_epoch: int = 40) -> list[dict]:
    """Rows shaped like a real run: falling losses, rising accuracies, AST near 0.3."""
    rows = []
    for e in range(1, n_epochs + 1):
        t = e / n_epochs
        for phase in ("train", "val"):
            gap = 0.0 if phase == "train" else 0.05
            mlm, struct, pair = 1.38 - 0.3 * t + gap, 1.1 - 0.5 * t + gap, 0.09 - 0.04 * t
            p, r = 0.2 + 0.3 * t - gap, 0.15 + 0.35 * t - gap
            rows.append({
                "epoch": e, "step": e * steps_per_epoch, "phase": phase,
                "loss": mlm + 0.8 * struct + 1.5 * pair, "mlm_loss": mlm,
                "structure_loss": struct, "pair_loss": pair, "mlm_accuracy": 0.3 + 0.1 * t - gap,
                "structure_accuracy": 0.5 + 0.2 * t - gap,
                "pair_precision": p, "pair_recall": r, "pair_f1": 2 * p * r / (p + r),
                "learning_rate": 2e-4 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))),
                "activation_rate": 0.3 + 0.05 * (-1) ** e,
                "samples_skipped": 0 if phase == "val" else 90 + 5 * e,
                "tokens_per_s": 5000.0 + 100 * e, "wall_time_s": 60.0 * e, "nonfinite_steps": 0,
                "epoch_time_s": 55.0 if phase == "train" else 5.0,
            })
    return rows


def write_run(directory: Path, n_epochs: int = 3, config: dict | None = None) -> Path:
    """A training output dir as the trainer leaves it: metrics CSV (written by the real
    MetricsLogger) and run_config.yaml with a nested 'resolved' record."""
    directory.mkdir(parents=True, exist_ok=True)
    logger = MetricsLogger(directory / "training_metrics.csv")
    for row in metric_rows(n_epochs):
        logger.log(row)
    if config is None:
        config = {"model_size": "small", "scheduler": "cosine", "learning_rate": 2e-4,
                  "warmup_steps": 20, "min_lr_ratio": 0.1, "use_ast": True,
                  "ast_target_activation": 0.3,
                  "resolved": {"device_used": "cpu", "model": {"d_model": 192}}}
    (directory / "run_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory / "training_metrics.csv"


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def assert_real_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    assert path.stat().st_size > 20_000, f"{path} is suspiciously small"
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert float(pixels[..., :3].std()) > 0.05, f"{path} looks blank"


def test_writes_four_valid_pngs(tmp_path):
    metrics = write_run(tmp_path / "run")
    out = tmp_path / "plots"
    paths = plot_metrics(metrics, out)
    assert [p.name for p in paths] == list(OUTPUT_NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_NAMES)  # no temp files left
    for path in paths:
        assert_real_png(path)


def test_activation_target_comes_from_config():
    assert activation_target({"use_ast": True, "ast_target_activation": 0.3}) == 0.3
    assert activation_target({"train": {"use_ast": True, "ast_target_activation": 0.55}}) == 0.55
    assert activation_target({"ast_target_activation": 0.7}) == 0.7  # use_ast defaults to on
    assert activation_target({"use_ast": False, "ast_target_activation": 0.3}) is None
    assert activation_target(None) is None
    assert activation_target({"model_size": "small"}) is None
    with pytest.raises(ConfigError, match="ast_target_activation"):
        activation_target({"ast_target_activation": 1.5})
    with pytest.raises(ConfigError, match="use_ast"):
        activation_target({"use_ast": "yes", "ast_target_activation": 0.3})


def test_find_key_prefers_shallowest():
    config = {"a": {"model_size": "tiny", "b": {"scheduler": "linear"}}, "model_size": "base"}
    assert find_key(config, "model_size") == "base"
    assert find_key(config, "scheduler") == "linear"
    assert find_key(config, "absent") is None


def test_labels_read_the_run_config(tmp_path):
    metrics = read_metrics(write_run(tmp_path, n_epochs=3))
    config = yaml.safe_load((tmp_path / "run_config.yaml").read_text())
    assert schedule_label(config) == "cosine, peak 0.0002, warmup 20 steps, min 0.1x peak"
    best = max((r for r in metric_rows(3) if r["phase"] == "val"), key=lambda r: r["pair_f1"])
    title = run_title(metrics, config)
    assert "model small" in title and "3 epochs" in title
    assert f"best val pair F1 {best['pair_f1']:.3f} (epoch {best['epoch']})" in title
    assert "= model_best.pt; model.pt = epoch 3" in title and "pretraining" in title
    assert "fine-tuning" in run_title(metrics, {**config, "init_from": "pre/model.pt"})


def test_read_metrics_orders_by_epoch_and_splits_phases(tmp_path):
    rows = metric_rows(3)
    path = write_csv(tmp_path / "m.csv", list(COLUMNS),
                     [[r[c] for c in COLUMNS] for r in reversed(rows)])
    metrics = read_metrics(path)
    assert metrics.n_epochs == 3
    assert metrics.train["epoch"].tolist() == [1, 2, 3]
    assert metrics.val["samples_skipped"].tolist() == [0, 0, 0]
    assert metrics.train["samples_skipped"].tolist() == [95, 100, 105]


# The header of the replaced project's training_metrics.csv (what its trainer writes and its
# documentation describes).
OLD_PROJECT_HEADER = ("epoch,step,phase,loss,mlm_loss,structure_loss,pair_loss,mlm_accuracy,"
                      "structure_accuracy,pair_precision,pair_recall,pair_f1,learning_rate,"
                      "activation_rate").split(",")


def test_our_csv_begins_with_the_old_projects_columns(tmp_path):
    header = write_run(tmp_path).read_text().splitlines()[0].split(",")
    assert header[:14] == OLD_PROJECT_HEADER
    assert header[14:] == ["samples_skipped", "tokens_per_s", "wall_time_s", "nonfinite_steps",
                           "epoch_time_s"]


def test_a_csv_of_the_old_project_plots_leaving_out_what_it_lacks(tmp_path, capsys):
    rows = [[r[c] for c in OLD_PROJECT_HEADER] for r in metric_rows(3)]
    path = write_csv(tmp_path / "training_metrics.csv", OLD_PROJECT_HEADER, rows)
    metrics = read_metrics(path)
    assert metrics.val["mlm_accuracy"].tolist() == [
        r["mlm_accuracy"] for r in metric_rows(3) if r["phase"] == "val"]
    assert set(metrics.absent) == {"samples_skipped", "tokens_per_s", "wall_time_s",
                                   "nonfinite_steps", "epoch_time_s"}
    paths = plot_metrics(path, tmp_path / "plots")
    assert "samples_skipped" in capsys.readouterr().err
    for png in paths:
        assert_real_png(png)
    cli = subprocess.run([sys.executable, "-m", "genesis_rna.plot_metrics", "--metrics_file",
                          str(path), "--output_dir", str(tmp_path / "cli")],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(OUTPUT_NAMES)


def test_our_earlier_column_names_are_still_read(tmp_path):
    earlier = {"mlm_loss": "loss_mlm", "structure_loss": "loss_struct", "pair_loss": "loss_pair",
               "mlm_accuracy": "mlm_acc", "structure_accuracy": "struct_acc",
               "learning_rate": "lr"}
    rows = [[r[c] for c in COLUMNS] for r in metric_rows(2)]
    path = write_csv(tmp_path / "m.csv", [earlier.get(c, c) for c in COLUMNS], rows)
    metrics = read_metrics(path)
    assert metrics.absent == ()
    assert metrics.train["learning_rate"].tolist() == [
        r["learning_rate"] for r in metric_rows(2) if r["phase"] == "train"]


def test_a_missing_panel_column_is_left_out_and_named(tmp_path, capsys):
    header = [c for c in COLUMNS if c not in ("pair_f1", "learning_rate")]
    rows = [[r[c] for c in header] for r in metric_rows(2)]
    path = write_csv(tmp_path / "training_metrics.csv", header, rows)
    paths = plot_metrics(path, tmp_path / "plots")
    err = capsys.readouterr().err
    assert str(path) in err and "pair_f1" in err and "learning_rate" in err
    assert [p.name for p in paths] == list(OUTPUT_NAMES)
    assert "no val pair F1" in run_title(read_metrics(path), None)


def test_missing_required_column_names_file_and_column(tmp_path):
    header = [c for c in COLUMNS if c != "phase"]
    rows = [[r[c] for c in header] for r in metric_rows(2)]
    path = write_csv(tmp_path / "training_metrics.csv", header, rows)
    with pytest.raises(InputFileError) as info:
        plot_metrics(path, tmp_path / "plots")
    message = str(info.value)
    assert str(path) in message and "missing column(s): phase" in message
    assert not (tmp_path / "plots").exists()
    only_ids = write_csv(tmp_path / "ids.csv", ["epoch", "phase"], [[1, "train"]])
    with pytest.raises(InputFileError, match="missing column.*any metric"):
        read_metrics(only_ids)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputFileError, match="expected columns: epoch, step, phase"):
        read_metrics(empty)
    header_only = write_csv(tmp_path / "header.csv", list(COLUMNS), [])
    with pytest.raises(InputFileError, match="no train rows"):
        read_metrics(header_only)
    with pytest.raises(InputFileError, match="not found"):
        read_metrics(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [("loss", "abc", "column 'loss': 'abc' is not a number"),
     ("pair_f1", "", "empty value in column 'pair_f1'"),
     ("epoch", "1.5", "not a whole number"),
     ("phase", "test", "'test' is not one of")],
)
def test_bad_value_names_file_and_line(tmp_path, column, value, match):
    rows = [[r[c] for c in COLUMNS] for r in metric_rows(2)]
    rows[2][COLUMNS.index(column)] = value  # the third data row sits on line 4
    path = write_csv(tmp_path / "m.csv", list(COLUMNS), rows)
    with pytest.raises(InputFileError, match=match) as info:
        read_metrics(path)
    assert info.value.line == 4 and f"{path}:4:" in str(info.value)


def test_duplicate_epoch_row_is_rejected(tmp_path):
    rows = [[r[c] for c in COLUMNS] for r in metric_rows(2)]
    path = write_csv(tmp_path / "m.csv", list(COLUMNS), rows + [rows[0]])
    with pytest.raises(InputFileError, match="second train row for epoch 1") as info:
        read_metrics(path)
    assert info.value.line == 6


def test_nan_loss_still_renders(tmp_path):
    metrics = write_run(tmp_path, n_epochs=3)
    text = metrics.read_text().splitlines()
    fields = text[3].split(",")
    fields[COLUMNS.index("pair_loss")] = "nan"
    text[3] = ",".join(fields)
    metrics.write_text("\n".join(text) + "\n")
    assert np.isnan(read_metrics(metrics).train["pair_loss"][1])
    for path in plot_metrics(metrics, tmp_path / "plots"):
        assert_real_png(path)


def test_single_epoch_without_config_renders(tmp_path):
    metrics = write_run(tmp_path / "run", n_epochs=1)
    (tmp_path / "run" / "run_config.yaml").unlink()
    for path in plot_metrics(metrics, tmp_path / "plots"):
        assert_real_png(path)


def test_ast_off_config_renders(tmp_path):
    config = {"model_size": "tiny", "use_ast": False, "ast_target_activation": 0.4}
    metrics = write_run(tmp_path / "run", n_epochs=2, config=config)
    for path in plot_metrics(metrics, tmp_path / "plots"):
        assert_real_png(path)


def test_explicit_run_config_must_exist(tmp_path):
    metrics = write_run(tmp_path / "run")
    with pytest.raises(InputFileError, match="run config file not found"):
        plot_metrics(metrics, tmp_path / "plots", run_config=tmp_path / "nope.yaml")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genesis_rna.plot_metrics", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_writes_and_prints_paths(tmp_path):
    metrics = write_run(tmp_path / "run")
    out = tmp_path / "plots"
    result = run_cli("--metrics_file", str(metrics), "--output_dir", str(out),
                     "--run_config", str(tmp_path / "run" / "run_config.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(out / n) for n in OUTPUT_NAMES]
    for name in OUTPUT_NAMES:
        assert_real_png(out / name)


def test_cli_missing_file_exits_1_with_message(tmp_path):
    missing = tmp_path / "absent.csv"
    result = run_cli("--metrics_file", str(missing), "--output_dir", str(tmp_path / "plots"))
    assert result.returncode == 1
    assert str(missing) in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "plots").exists()
