"""bench ast's bookkeeping: when a curve reaches a goal, and the curves PNG (no training)."""

from __future__ import annotations

from genesis_rna.bench import plot_ast_curves, time_to_reach


def test_time_to_reach_is_the_first_epoch_at_or_above_the_goal():
    seconds = [10.0, 20.0, 30.0]
    assert time_to_reach(seconds, [0.1, 0.3, 0.2], 0.3) == 20.0
    assert time_to_reach(seconds, [0.1, 0.3, 0.2], 0.05) == 10.0
    assert time_to_reach(seconds, [0.1, 0.3, 0.2], 0.31) is None


def test_curves_png_has_one_line_per_run(tmp_path):
    runs = {f"AST {n}": {"cum_seconds": [1.0, 2.0, 3.0], "val_pair_f1": [0.1, 0.2, 0.3],
                         "val_mlm_acc": [0.3, 0.4, 0.5]} for n in ("off", "importance")}
    path = plot_ast_curves(runs, tmp_path / "sub" / "ast.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
