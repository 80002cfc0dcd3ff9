"""Peak memory of a block of code, beyond what was held when it started.

On a CUDA device: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (exact, tensors
only). On the CPU: the growth of the process's peak resident set (``VmHWM`` of ``/proc/self/status``,
reset by writing 5 to ``/proc/self/clear_refs``), after glibc's free pages are handed back
(``malloc_trim``): otherwise a block could reuse pages freed earlier and show no growth. Pages the
allocator keeps through fragmentation count, so it may over-state a block's own tensors.
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import torch

# On the CPU, glibc serves blocks under its mmap threshold (at most 32 MiB) from heaps whose freed,
# fragmented pages may stay resident: a measured peak can exceed the tensors' by up to about this.
CPU_ALLOCATOR_SLACK = 32 * 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may miss reused pages
        pass


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {_STATUS}")


def cpu_peak_supported() -> bool:
    """Whether this process can reset and read its peak resident set (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
        return True
    except (OSError, RuntimeError):
        return False


class PeakMemory:
    """``with PeakMemory(device) as m: ...``; then ``m.base_bytes`` (held at entry), ``m.peak_bytes``
    (the highest point inside) and ``m.extra_bytes`` (peak - base)."""

    def __init__(self, device: str | torch.device):
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        self.device = torch.device(device) if self.cuda else None

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_bytes = torch.cuda.memory_allocated(self.device)
        else:
            _trim()
            _CLEAR_REFS.write_text("5")  # peak resident set := current resident set
            self.base_bytes = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak_bytes = _status_kib("VmHWM") * 1024
        self.extra_bytes = max(0, self.peak_bytes - self.base_bytes)
