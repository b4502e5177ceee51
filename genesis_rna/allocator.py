"""Which malloc the process runs on, and where tcmalloc lives.

Training allocates [B, C, T, T] pair-map tensors whose sizes change with every batch width and
AST sub-batch. glibc malloc fragments on that pattern: on the real-data split its resident
memory climbed to 3.9 GB by step 300 (tiny model; peak 4.5 GB), while the same 300 steps under
tcmalloc stayed at 2.2 GB and ran 30% faster (92 s against 134 s; jemalloc held 1.1 GB but took
201 s). tcmalloc cannot be switched in after start, so the workflow's train rule preloads it
(``LD_PRELOAD``) when the library is installed, and the trainer says which allocator it got.
The trainer's command line (``python -m genesis_rna.train_pretrain``) does the same for users
who start it by hand: ``reexec_with_tcmalloc`` restarts the process once with tcmalloc
preloaded (same PID, same arguments; torchrun's workers included). ``GENESIS_RNA_MALLOC=system``
keeps the system allocator.

    python -m genesis_rna.allocator    # prints the tcmalloc path, or nothing

Streaming stages that churn through Arrow buffers (the parse stage's second pass reads and
writes a Parquet row group every few thousand rows) can switch Arrow to jemalloc with
immediate purging (``arrow_returns_memory``) and hand glibc's free heap back (``trim_heap``):
on the parse stage at 50x the Rfam seed file, Arrow's default mimalloc held the peak at 349 MB
against 274 MB at 1x; with both, 201 MB against 171 MB (README, "Scaling").
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path

TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so.4")


def tcmalloc_library() -> str | None:
    """Path of an installed tcmalloc (conda env first, then the system library folders)."""
    folders = [Path(sys.prefix) / "lib"]
    if os.environ.get("CONDA_PREFIX"):
        folders.insert(0, Path(os.environ["CONDA_PREFIX"]) / "lib")
    folders += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
                Path("/usr/lib64"), Path("/usr/lib"), Path("/usr/local/lib")]
    for folder in folders:
        for name in TCMALLOC_NAMES:
            if (folder / name).is_file():
                return str(folder / name)
    return None


def active_allocator() -> str:
    """'tcmalloc', 'jemalloc' or 'glibc malloc', from the libraries mapped into this process."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    for name in ("tcmalloc", "jemalloc"):
        if f"lib{name}" in maps:
            return name
    return "glibc malloc"


def reexec_with_tcmalloc(module: str) -> None:
    """Restart ``python -m module <args>`` with tcmalloc preloaded, when it is installed, not
    loaded yet and not declined (``GENESIS_RNA_MALLOC=system``); else return. Once only: the
    restarted process finds tcmalloc loaded (or the marker set) and carries on."""
    if os.environ.get("GENESIS_RNA_MALLOC") == "system" or os.environ.get("_GENESIS_RNA_REEXEC"):
        return
    lib = tcmalloc_library()
    if lib is None or active_allocator() == "tcmalloc":
        return
    env = dict(os.environ, _GENESIS_RNA_REEXEC="1")
    env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)


@contextlib.contextmanager
def arrow_returns_memory() -> Iterator[None]:
    """Within the block, Arrow allocates from jemalloc with decay 0 (freed pages go back to
    the OS at once), or from the system allocator where pyarrow has no jemalloc; the previous
    default pool is restored after (buffers keep the pool they came from)."""
    import pyarrow as pa

    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_MALLOC_TRIM = _malloc_trim()


def trim_heap() -> None:
    """Give glibc malloc's free memory back to the OS (``malloc_trim(0)``); a no-op without
    glibc. Costs about a millisecond: call it between blocks of work, not per row."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


if __name__ == "__main__":
    print(tcmalloc_library() or "")
