"""Which NVML device a torch device is, found without initialising CUDA in this process.

`cuda:N` is the N-th device that `CUDA_VISIBLE_DEVICES` exposes — indices, `GPU-`/`MIG-` UUIDs
or unique UUID prefixes, read up to the first invalid entry, as CUDA does — and its NVML
handle is looked up by UUID. Integer entries follow NVML's PCI-bus order, which is CUDA's
order when `CUDA_DEVICE_ORDER=PCI_BUS_ID` or all GPUs are the same model; the mapping notes
when neither holds, and the worker's own report of its UUID is the final check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class MappingError(Exception):
    """The case's device could not be matched to an NVML device; the message says why."""


def load_nvml() -> Any:
    """The pynvml module, or MappingError when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        raise MappingError("nvidia-ml-py (pynvml) is not installed") from None
    return pynvml


def describe_error(nvml: Any, exc: BaseException) -> str:
    if isinstance(exc, nvml.NVMLError):
        return f"NVML: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def normalize_uuid(uuid: str) -> str:
    """'GPU-8e8b...' (NVML) and '8e8b...' (torch) name the same device."""
    text = uuid.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


@dataclass(frozen=True)
class Mapped:
    handle: Any
    uuid: str
    name: str
    #: Caveat about the mapping (device order), or None.
    note: str | None = None


def visible_devices(nvml: Any, environ: Mapping[str, str]) -> tuple[list[str], str | None]:
    """UUIDs of the devices CUDA exposes, in CUDA's order, and a note on the order used."""
    devices = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        devices.append((_text(nvml.nvmlDeviceGetUUID(handle)),
                        _text(nvml.nvmlDeviceGetName(handle))))
    spec = environ.get("CUDA_VISIBLE_DEVICES")
    used_index = spec is None
    if spec is None:
        chosen = [uuid for uuid, _ in devices]
    else:
        chosen = []
        for entry in (e.strip() for e in spec.split(",")):
            uuid = _parse_entry(entry, devices)
            if uuid is None or uuid in chosen:
                break  # CUDA ignores the rest of the list from the first invalid entry
            used_index = used_index or entry.isdigit()
            chosen.append(uuid)
    names = {name for uuid, name in devices if uuid in chosen}
    note = None
    if used_index and len(names) > 1 and environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        note = ("mixed GPU models and CUDA's default FASTEST_FIRST order: device indices may "
                "differ from NVML's; set CUDA_DEVICE_ORDER=PCI_BUS_ID (checked against the "
                "worker's UUID)")
    return chosen, note


def _parse_entry(entry: str, devices: list[tuple[str, str]]) -> str | None:
    if entry.isdigit():
        index = int(entry)
        return devices[index][0] if index < len(devices) else None
    if entry.upper().startswith("MIG-"):
        return entry  # a MIG instance: NVML resolves its UUID directly
    prefix = normalize_uuid(entry)
    if not prefix:
        return None
    matches = [uuid for uuid, _ in devices if normalize_uuid(uuid).startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


def map_device(nvml: Any, device: str, environ: Mapping[str, str]) -> Mapped:
    """The NVML handle of a torch device string ("cuda", "cuda:N")."""
    _, _, index_text = device.partition(":")
    index = int(index_text) if index_text else 0
    try:
        visible, note = visible_devices(nvml, environ)
    except Exception as exc:
        raise MappingError(f"listing NVML devices failed: {describe_error(nvml, exc)}") from None
    spec = environ.get("CUDA_VISIBLE_DEVICES")
    if index >= len(visible):
        shown = f"CUDA_VISIBLE_DEVICES={spec!r}" if spec is not None else "no CUDA_VISIBLE_DEVICES"
        raise MappingError(f"{device}: only {len(visible)} device(s) visible through NVML "
                           f"({shown})")
    uuid = visible[index]
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        name = _text(nvml.nvmlDeviceGetName(handle))
    except Exception as exc:
        raise MappingError(f"{device} -> {uuid}: {describe_error(nvml, exc)}") from None
    return Mapped(handle=handle, uuid=uuid, name=name, note=note)
