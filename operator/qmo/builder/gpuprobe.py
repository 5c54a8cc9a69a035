"""Which GPUs this pod sees: nvidia-smi first (no CUDA context), torch as a fallback.

Called by qmo.builder.cli before any work; the parsing is pure and unit-tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from qmo.builder.gpucheck import SeenGpu

NVIDIA_SMI_QUERY = (
    "nvidia-smi",
    "--query-gpu=name,compute_cap,memory.total,driver_version",
    "--format=csv,noheader,nounits",
)


def parse_nvidia_smi(output: str) -> list[SeenGpu]:
    """One SeenGpu per CSV line of NVIDIA_SMI_QUERY's output."""
    gpus = []
    for line in output.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not fields[0]:
            continue
        memory = fields[2] if len(fields) > 2 else ""
        gpus.append(
            SeenGpu(
                product=fields[0],
                compute_capability=fields[1],
                memory_mib=int(memory) if memory.isdigit() else None,
                driver=fields[3] if len(fields) > 3 and fields[3] else None,
            )
        )
    return gpus


def probe() -> list[SeenGpu]:
    """The GPUs visible to this process (CUDA_VISIBLE_DEVICES applies to both ways)."""
    if shutil.which(NVIDIA_SMI_QUERY[0]):
        try:
            done = subprocess.run(
                NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=60, check=True
            )
            gpus = parse_nvidia_smi(done.stdout)
            if gpus:
                return _visible(gpus)
        except (OSError, subprocess.SubprocessError):
            pass
    return _probe_torch()


def _visible(gpus: list[SeenGpu]) -> list[SeenGpu]:
    """nvidia-smi lists every GPU of the node's view; keep those CUDA_VISIBLE_DEVICES names."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not all(p.strip().isdigit() for p in visible.split(",") if p.strip()):
        return gpus  # unset, or UUIDs: the device plugin already limited what we see
    indexes = [int(p) for p in visible.split(",") if p.strip()]
    return [gpus[i] for i in indexes if i < len(gpus)]


def _probe_torch() -> list[SeenGpu]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(index)
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            SeenGpu(
                product=torch.cuda.get_device_name(index),
                compute_capability=f"{major}.{minor}",
                memory_mib=int(props.total_memory) // (1024 * 1024),
            )
        )
    return gpus
