"""Checkpoints: atomic writes, safe loading (weights_only=True), rotation, fallback, RNG state.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so
``torch.load(weights_only=True)`` can read it and no pickle payload can run code on load.
"""

from __future__ import annotations

import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from genesis_rna.atomic import atomic_path
from genesis_rna.errors import InputFileError
from genesis_rna.model import GenesisRNA, ModelConfig
from genesis_rna.tokenization import Tokenizer

CHECKPOINT_RE = re.compile(r"^ckpt_step(\d{9})\.pt$")
MODEL_KEYS = ("model_config", "model", "tokenizer", "config", "pair_threshold")  # of model.pt


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:
                torch.save(state, fh)
        except RuntimeError as exc:
            # torch wraps a failed write (disk full, file-size limit) in a vague RuntimeError;
            # surface the OS error so the message says what happened
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


NOT_A_MODEL = ("is not a Genesis RNA model checkpoint ({}); it must be a model.pt written by "
               "genesis_rna.train_pretrain")
# torch's words for an archive it cannot read (truncated, corrupt, not written by torch.save);
# other RuntimeErrors (e.g. a CUDA map_location without CUDA) are not about the file
_BAD_ARCHIVE = re.compile(r"PytorchStreamReader|inline_container|zip archive", re.IGNORECASE)
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _unreadable_reason(exc: Exception) -> str | None:
    """Why torch.load could not read the file, in a few words; None if not the file's fault."""
    if isinstance(exc, pickle.UnpicklingError):
        # torch's own text advises weights_only=False, i.e. running the file's code: never
        # repeat it; name the offending Python object instead, when there is one
        found = _UNSAFE_GLOBAL.search(str(exc))
        if found:
            return f"it holds a pickled Python object ({found.group(1)}), which is never loaded"
        return "not a file written by torch.save"
    if isinstance(exc, EOFError):
        return "empty or truncated file"
    if isinstance(exc, zipfile.BadZipFile):
        return "corrupt zip archive"
    if isinstance(exc, RuntimeError):
        return "truncated or corrupt archive" if _BAD_ARCHIVE.search(str(exc)) else None
    if isinstance(exc, (KeyError, ValueError, UnicodeDecodeError)):
        return "not a file written by torch.save"
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with ``weights_only=True`` (no pickled code can run). A file that is not a torch
    checkpoint of plain data raises InputFileError saying so."""
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of files it then refuses anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, KeyError,
            ValueError, UnicodeDecodeError) as exc:
        reason = _unreadable_reason(exc)
        if reason is None:
            raise
        raise InputFileError(path, NOT_A_MODEL.format(reason)) from None


class CheckpointManager:
    """Numbered checkpoints in one folder; keeps the newest ``keep``; resumes from the newest
    one that loads, warning about (and skipping) any that is truncated or corrupt."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory)
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt_step{step:09d}.pt"

    def list(self) -> list[Path]:
        """Checkpoint files, newest (highest step) first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if CHECKPOINT_RE.match(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)), reverse=True)

    def save(self, step: int, state: dict) -> Path:
        path = self.path_for(step)
        save_checkpoint(path, state)
        for old in self.list()[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[Path, dict] | None:
        for path in self.list():
            try:
                return path, load_checkpoint(path)
            except Exception as exc:  # truncated zip, bad pickle, refused payload: try older
                warnings.warn(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); "
                              "falling back to the previous checkpoint", stacklevel=2)
        return None

    def clear(self) -> None:
        for path in self.list():
            path.unlink(missing_ok=True)


def capture_rng_state() -> dict:
    """Torch (CPU and CUDA), numpy and python RNG states as tensors, lists and ints."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[GenesisRNA, Tokenizer, dict, float, str]:
    """Load a final ``model.pt`` for inference.

    Returns (model in eval mode on ``device``, tokenizer, resolved training config dict,
    tuned pair-probability threshold, the decoder that threshold was tuned for). Models
    saved before decoders were named were tuned for the greedy decoder.
    """
    state = load_checkpoint(path, map_location=device)
    if not isinstance(state, dict):
        raise InputFileError(path, NOT_A_MODEL.format(f"it holds a {type(state).__name__}"))
    missing = [k for k in MODEL_KEYS if k not in state]
    if missing == ["pair_threshold"]:
        raise InputFileError(path, NOT_A_MODEL.format(
            "a training checkpoint without the tuned pair threshold of a finished run"))
    if missing:
        raise InputFileError(path, NOT_A_MODEL.format(f"no {missing[0]!r} entry"))
    model = GenesisRNA(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return (model, Tokenizer.from_dict(state["tokenizer"]), state["config"],
            float(state["pair_threshold"]), str(state.get("pair_decoder", "greedy")))
