"""Where a run computes: seeds, the device and autocast dtype it asked for, and torchrun's process group."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local_rank)


def choose_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """None means fp32. bf16 needs no loss scaling; fp16 (pre-Ampere GPUs) does."""
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast_name(dtype: torch.dtype | None) -> str:
    """The precision a run computes in, by name: what ``precision: auto`` resolved to on this machine."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def resolved_compute(requested_device: str, precision: str) -> dict[str, str]:
    """The device type and autocast precision ``device``/``precision`` mean here (``auto`` differs by machine)."""
    device = choose_device(requested_device)
    return {"device": device.type, "autocast": autocast_name(choose_dtype(device, precision))}


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a no-op otherwise or when already joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
