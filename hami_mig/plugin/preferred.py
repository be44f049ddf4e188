"""Default GetPreferredAllocation policy: pack onto the fewest groups (GPUs), then the fewest NUMA nodes.

The kubelet only treats the answer as advice and an error fails the pod, so every function here
answers something valid, or an empty list when the request itself is inconsistent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from math import comb

from .devices import Device

logger = logging.getLogger(__name__)

# Above this many candidate group sets we fall back to largest-first, still minimal in group count.
MAX_COMBINATIONS = 2000

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders 'gpu-2' before 'gpu-10'."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


def is_valid_preference(result: Sequence[str], available: Sequence[str], must_include: Sequence[str],
                        size: int) -> bool:
    """Whether ``result`` is exactly ``size`` distinct available IDs that contain every must-include ID."""
    chosen = set(result)
    return (
        len(result) == size
        and len(chosen) == size
        and chosen <= set(available)
        and set(must_include) <= chosen
    )


def choose_preferred(available: Sequence[str], must_include: Sequence[str], size: int,
                     devices: Mapping[str, Device]) -> list[str]:
    """Picks ``size`` IDs from ``available`` including ``must_include``; [] if that is impossible."""
    avail = _dedupe(available)
    must = _dedupe(must_include)
    avail_set = set(avail)
    missing = [device_id for device_id in must if device_id not in avail_set]
    if size <= 0 or size > len(avail) or len(must) > size or missing:
        logger.warning(
            "preferred allocation request cannot be satisfied (size=%d, %d available, must_include=%s, "
            "must_include not available=%s); answering with no preference", size, len(avail), must, missing)
        return []

    chosen = list(must)
    need = size - len(chosen)
    free: dict[str, list[str]] = {}
    for device_id in sorted(avail_set - set(must), key=natural_key):
        free.setdefault(_group_of(device_id, devices), []).append(device_id)

    used = {_group_of(device_id, devices) for device_id in must}
    for group in sorted(used & free.keys(), key=lambda g: (-len(free[g]), natural_key(g))):
        if need == 0:
            break
        take = free[group][:need]
        chosen += take
        need -= len(take)

    if need > 0:
        others = {group: ids for group, ids in free.items() if group not in used}
        base_numa = _numa_nodes(must, devices)
        picked = _best_groups(others, need, base_numa, devices)
        for group in sorted(picked, key=lambda g: (len(others[g]), natural_key(g))):
            take = others[group][:need]
            chosen += take
            need -= len(take)
    return sorted(chosen, key=natural_key)


def _best_groups(groups: Mapping[str, list[str]], need: int, base_numa: set[int],
                 devices: Mapping[str, Device]) -> tuple[str, ...]:
    """Fewest groups covering ``need``; among those, fewest NUMA nodes, then the tightest fit."""
    by_size = sorted(groups, key=lambda g: (-len(groups[g]), natural_key(g)))
    covered = 0
    count = 0
    for group in by_size:
        covered += len(groups[group])
        count += 1
        if covered >= need:
            break
    if comb(len(by_size), count) > MAX_COMBINATIONS:
        return tuple(by_size[:count])

    best: tuple[str, ...] = tuple(by_size[:count])
    best_score: tuple[int, int, tuple[tuple[tuple[int, int | str], ...], ...]] | None = None
    for candidate in combinations(by_size, count):
        capacity = sum(len(groups[g]) for g in candidate)
        if capacity < need:
            continue
        numa = base_numa | _numa_nodes((i for g in candidate for i in groups[g]), devices)
        score = (len(numa), capacity, tuple(sorted(natural_key(g) for g in candidate)))
        if best_score is None or score < best_score:
            best, best_score = candidate, score
    return best


def _group_of(device_id: str, devices: Mapping[str, Device]) -> str:
    device = devices.get(device_id)
    if device is not None and device.group:
        return device.group
    return f"\0{device_id}"  # ungrouped or unknown: a group of its own, never equal to a real group


def _numa_nodes(ids: Iterable[str], devices: Mapping[str, Device]) -> set[int]:
    nodes: set[int] = set()
    for device_id in ids:
        device = devices.get(device_id)
        if device is not None and device.numa_node is not None:
            nodes.add(device.numa_node)
    return nodes


def _dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))
