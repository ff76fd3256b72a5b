"""docker's relative CPU weight and swap limit (``--cpu-shares``, ``--memory-swap``) as systemd's
unit properties: pure conversions, each value checked once at its type.

- ``--cpu-shares`` (cgroup v1 ``cpu.shares``, 2 to 262144, 1024 the default) becomes the unit's
  ``CPUWeight=`` (cgroup v2 ``cpu.weight``, 1 to 10000, 100 the default) by the curve runc and crun
  use since 2025 (opencontainers/cgroups' ``ConvertCPUSharesToCgroupV2Value``: it maps the two
  ranges' minimum, default and maximum onto each other: 2 -> 1, 1024 -> 100, 262144 -> 10000).
  systemd 257 has no ``CPUShares=`` any more; on a legacy (v1) cpu controller systemd writes
  ``cpu.shares`` from ``CPUWeight=`` itself.
- ``--memory-swap`` is docker's memory *plus* swap (-1: unlimited swap) and needs ``--memory``;
  cgroup v2 limits swap alone, so the unit gets ``MemorySwapMax=`` = swap - memory (as runc's
  ``ConvertMemorySwapToCgroupV2Value``).
"""

from __future__ import annotations

import math

from .errors import InvalidArgument
from .values import UINT64_MAX, BadValue, parse_bytes

MIN_SHARES = 2
MAX_SHARES = 262144  # the kernel's MAX_SHARES (1 << 18)
MAX_WEIGHT = 10000


def parse_cpu_shares(text: str, option: str = "--cpu-shares") -> int:
    """A relative CPU weight as docker's --cpu-shares: a whole number from 2 to 262144."""
    t = text.strip()
    if not t.isdigit() or not MIN_SHARES <= int(t) <= MAX_SHARES:
        raise BadValue(
            text,
            option,
            f"a whole number from {MIN_SHARES} to {MAX_SHARES}",
            hint="1024 is the default weight",
        )
    return int(t)


def cpu_weight(shares: int) -> int:
    """systemd's CPUWeight= (cgroup v2 cpu.weight) for docker's CPU shares."""
    if shares <= MIN_SHARES:
        return 1
    if shares >= MAX_SHARES:
        return MAX_WEIGHT
    bits = math.log2(shares)
    return math.ceil(10 ** ((bits * bits + 125 * bits) / 612 - 7 / 34))


def parse_memory_swap(text: str, option: str = "--memory-swap") -> int:
    """docker's --memory-swap: a size (memory plus swap), or -1 for unlimited swap."""
    if text.strip() == "-1":
        return -1
    return parse_bytes(text, option)


def check_swap(swap: int | None, memory: int | None, option: str = "--memory-swap") -> None:
    """docker's rules: a swap limit needs a memory limit and is at least as large (or -1)."""
    if swap is None or swap == -1:  # -1 without --memory: nothing to limit (docker's too)
        return
    if memory is None:
        raise InvalidArgument(
            f"{option} needs a memory limit", hint="give --memory too (--memory-swap is memory plus swap)"
        )
    if swap != -1 and swap < memory:
        raise InvalidArgument(
            f"{option} ({swap} bytes) is below the memory limit ({memory} bytes)",
            hint="--memory-swap is memory plus swap: give at least --memory, or -1 for unlimited swap",
        )


def swap_max(swap: int, memory: int) -> int:
    """systemd's MemorySwapMax= for docker's memory+swap ``swap`` (-1: infinity)."""
    return UINT64_MAX if swap == -1 else swap - memory
