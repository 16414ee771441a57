"""The torch side of a run's environment, read in a worker so the parent never imports torch."""

from __future__ import annotations

from typing import Any

import torch

from bench.env import safe


def torch_info() -> dict[str, Any]:
    """Torch build and settings, read inside a worker (may query CUDA)."""
    info: dict[str, Any] = {
        "torch_version": str(torch.__version__),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available()
        else None,
        "cpu_capability": safe(torch.backends.cpu.get_cpu_capability),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "default_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if info["cuda_available"]:
        info["cuda_devices"] = [
            {"index": i, "name": torch.cuda.get_device_name(i),
             "capability": list(torch.cuda.get_device_capability(i))}
            for i in range(torch.cuda.device_count())
        ]
    return info
