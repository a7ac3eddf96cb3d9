"""Target devices the planner knows: memory and compute capability.

Memory is the datasheet figure in GiB (the HBM/GDDR size NVIDIA sells the part by); the planner
subtracts a runtime reserve before it budgets anything (see ``planner.RUNTIME_RESERVE_GIB``).
Compute capability decides which precisions the engine can use: FP8 needs Ada (sm89) or Hopper
(sm90) and later, NVFP4 needs Blackwell (sm100). Sources: NVIDIA's product datasheets and the
CUDA GPU compute-capability table (developer.nvidia.com/cuda-gpus).

``cpu`` is the CPU twin (DESIGN §1): no compute capability, serves full precision, or int8
weights with ``quantization.mode: int8_wo``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    """One target device. ``sm`` is the compute capability as an int (sm90 -> 90), None on CPU."""

    name: str
    memory_gib: float
    sm: int | None
    aliases: tuple[str, ...] = ()

    @property
    def is_cpu(self) -> bool:
        return self.sm is None

    @property
    def supports_fp8(self) -> bool:
        return self.sm is not None and self.sm >= 89

    @property
    def supports_nvfp4(self) -> bool:
        return self.sm is not None and self.sm >= 100

    @property
    def architecture(self) -> str:
        """The NVIDIA architecture name for messages (Ampere, Ada, Hopper, Blackwell)."""
        if self.sm is None:
            return "CPU"
        for floor, arch in ((100, "Blackwell"), (90, "Hopper"), (89, "Ada"), (80, "Ampere")):
            if self.sm >= floor:
                return arch
        return "pre-Ampere"


DEVICES: tuple[Device, ...] = (
    Device("H100", 80, 90, ("H100-80GB", "H100-SXM", "H100-PCIE", "H100-SXM5-80GB")),
    Device("H100-NVL", 94, 90, ("H100-94GB",)),
    Device("H200", 141, 90, ("H200-141GB", "H200-SXM", "H200-NVL")),
    Device("A100-80GB", 80, 80, ("A100-SXM4-80GB", "A100-PCIE-80GB")),
    Device("A100-40GB", 40, 80, ("A100", "A100-SXM4-40GB", "A100-PCIE-40GB")),
    Device("L4", 24, 89),
    Device("L40S", 48, 89),
    Device("A10G", 24, 86),
    Device("A10", 24, 86),
    Device("B200", 180, 100, ("B200-180GB",)),
    Device("cpu", 16, None),
)


def device_names() -> list[str]:
    return [d.name for d in DEVICES]


def get_device(name: str) -> Device:
    """Look a device up by name or alias, case-insensitively; ValueError lists the known names."""
    wanted = name.strip().upper()
    for device in DEVICES:
        if wanted == device.name.upper() or wanted in device.aliases:
            return device
    raise ValueError(f"target.gpu: unknown device {name!r}; known: {', '.join(device_names())}")


def device_from_cuda_name(cuda_name: str) -> Device | None:
    """Best match for a CUDA device name such as 'NVIDIA H100 80GB HBM3' (None if unknown)."""
    upper = cuda_name.upper().replace("NVIDIA", "").strip()
    candidates = [d for d in DEVICES if not d.is_cpu and d.name.split("-")[0] in upper]
    by_memory = [d for d in candidates if f"{int(d.memory_gib)}GB" in upper.replace(" ", "")]
    pool = by_memory or candidates
    return max(pool, key=lambda d: len(d.name)) if pool else None
