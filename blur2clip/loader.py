"""The training stream's loader: worker processes that make batches of samples, how they take the stop
signals (the main process's to handle), and how they are shut down."""

from __future__ import annotations

import signal

import torch


def data_loader(dataset, batch: int, sampler, workers: int, rendering: str = "cpu", pin_memory: bool = False,
                prefetch: int = 2) -> torch.utils.data.DataLoader:
    """The training stream's loader: `workers` processes (0: the calling one) making batches of `batch`,
    `prefetch` batches ahead each. rendering: the device the dataset renders on; workers that use CUDA
    must be spawned, not forked."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers, worker_init_fn=worker_init,
        pin_memory=pin_memory, prefetch_factor=prefetch if workers else None,
        multiprocessing_context="spawn" if workers and rendering != "cpu" else None)


def worker_init(_):
    torch.set_num_threads(1)
    # A stop signal sent to the whole process group (SIGTERM, Ctrl-C) is the main process's to handle: it
    # finishes its step, writes the checkpoint and then shuts the workers down itself.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def shut_down(it) -> None:
    """Stop a DataLoader iterator's worker processes now, also while an error propagates (its traceback
    keeps the iterator alive past a `del`). They ignore SIGTERM (`worker_init`), so the interpreter's
    exit, which terminates its daemonic children and then joins them, would wait for them forever."""
    if hasattr(it, "_shutdown_workers"):  # (none to stop without workers)
        it._shutdown_workers()
