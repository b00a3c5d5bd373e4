"""Several training processes with DistributedDataParallel (`--processes N`, docs/design.md).

`t2r pretrain|convert --processes N` re-launches itself under torch.distributed.run (torchrun), one
process per rank; each rank then sees WORLD_SIZE/RANK/LOCAL_RANK and joins the process group (`gloo`
on CPU, `nccl` when CUDA is there). Every rank draws the same global batch for a step and trains on
its own contiguous slice of it; DDP averages the gradients, so with equal slices the update is the
single-process one up to float rounding. Rank 0 alone writes events, checkpoints and model folders.
"""
from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys

import torch
import torch.distributed as dist

# Rank 0 scores the teacher and evaluates alone while the others wait in a collective.
WAIT = datetime.timedelta(hours=6)


class Ranks:
    """This process's place among the training processes (a single process is rank 0 of 1)."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend, timeout=WAIT)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This rank's rows of a global batch (the caller checks that `batch` divides evenly)."""
        per = batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a per-rank scalar (the global batch's loss from its slices' losses)."""
        if self.world == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def under_launcher() -> bool:
    return "WORLD_SIZE" in os.environ


def relaunch(argv: list[str], processes: int, threads: int | None) -> int:
    """Run `python -m t2r argv` as `processes` ranks under torch.distributed.run; -> exit status.

    stdout (rank 0's events) passes straight through. The launcher's own stderr (a traceback block
    per failed rank) is reduced to the ranks' one-line errors, so a failure still reads as one line.
    SIGTERM/SIGINT are passed on: the launcher stops every rank, and a later run resumes from the
    last checkpoint."""
    per_rank = threads or max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(per_rank)}  # also silences the launcher's OMP warning
    # Explicit --redirects/--tee: with their default ("0") Debian's torch 1.13 on Python 3.11 fails
    # before starting any rank (Std.from_str finds no member for 0). Ranks other than 0 print no
    # stdout, so sending theirs to the launcher's log folder changes nothing that is seen.
    others = ",".join(f"{r}:1" for r in range(1, processes))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           f"--redirects={others}", f"--tee={others}", "--monitor_interval=0.5", "-m", "t2r", *argv]
    child = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _frame: child.send_signal(s))
    errors: list[str] = []
    for line in child.stderr:
        if line.startswith("t2r "):
            if line not in errors:
                errors.append(line)
                sys.stderr.write(line)
    code = child.wait()
    if code != 0 and not errors:
        sys.stderr.write(f"t2r: the {processes} training processes failed (torch.distributed.run exit {code})\n")
    return code
