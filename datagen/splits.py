"""Honest splits (issue 19, point 4): no asset and no near-duplicate in two splits.

Plain numpy and scipy, no Blender. The builder plans a split per object
(:func:`datagen.dataset_builder.plan_sources`: seen categories cut into ``sft`` / ``rl`` /
``eval`` by whole assets, held-out categories into ``eval_unseen``); once the meshes exist,
:func:`separate` joins every object with the objects that share its asset or lie within
``threshold`` of it by the shape descriptor (:mod:`datagen.descriptor`), transitively,
and gives each such group one split:

- a group that touches ``eval_unseen`` keeps only its ``eval_unseen`` members (the others
  are near-copies of a held-out shape and are dropped: they would leak it into training);
- any other group goes whole to the split most of its members were planned for (ties: the
  first of :data:`llm3d.chat.SPLITS`), so the planned proportions hold roughly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llm3d.chat import SPLITS

__all__ = ["SplitItem", "SplitOutcome", "separate"]

UNSEEN = "eval_unseen"
_NEIGHBOURS = 16


@dataclass(frozen=True)
class SplitItem:
    """One built object: its id, the asset it comes from, its planned split, its descriptor."""

    id: str
    asset: str
    split: str
    descriptor: npt.NDArray[np.float32]


@dataclass
class SplitOutcome:
    """The final split of each object (``None``: dropped) and what had to change."""

    splits: dict[str, str | None]
    moved: int = 0
    dropped: int = 0
    groups_joined: int = 0


def separate(items: Sequence[SplitItem], threshold: float) -> SplitOutcome:
    """Give every group of same-asset or near-duplicate objects one split; see the module doc.

    Parameters
    ----------
    items : the built objects, each with its planned split.
    threshold : float
        Descriptor distance (Euclidean) under which two objects are near-duplicates; 0 joins
        only objects of the same asset.

    Raises
    ------
    ValueError
        For a split that is not one of :data:`llm3d.chat.SPLITS`.
    """
    bad = sorted({i.split for i in items} - set(SPLITS))
    if bad:
        raise ValueError(f"unknown splits {bad}; use {', '.join(SPLITS)}")
    parent = list(range(len(items)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_of_asset: dict[str, int] = {}
    for k, item in enumerate(items):
        union(k, first_of_asset.setdefault(item.asset, k))
    if threshold > 0 and len(items) > 1:
        from scipy.spatial import cKDTree

        block = np.stack([np.asarray(i.descriptor, dtype=np.float64) for i in items])
        tree = cKDTree(block)
        # the nearest few within the threshold (fast even in 30 dimensions); a point whose
        # every one of them is that close sits in a dense cluster: ask for all its neighbours
        k = min(_NEIGHBOURS, len(items))
        dist, index = tree.query(block, k=k, distance_upper_bound=threshold)
        dist, index = dist.reshape(len(items), k), index.reshape(len(items), k)
        near = dist < threshold
        for a, b in zip(np.nonzero(near)[0], index[near], strict=True):
            union(int(a), int(b))
        for a in np.nonzero(near[:, -1])[0]:
            for b in tree.query_ball_point(block[a], r=float(np.nextafter(threshold, 0.0))):
                union(int(a), int(b))

    groups: dict[int, list[int]] = {}
    for k in range(len(items)):
        groups.setdefault(find(k), []).append(k)
    outcome = SplitOutcome(splits={})
    rank = {s: n for n, s in enumerate(SPLITS)}
    for members in groups.values():
        planned = [items[k].split for k in members]
        if len(set(planned)) > 1:
            outcome.groups_joined += 1
        if UNSEEN in planned:
            for k in members:
                keep = items[k].split == UNSEEN
                outcome.splits[items[k].id] = UNSEEN if keep else None
                outcome.dropped += 0 if keep else 1
            continue
        votes = Counter(planned)
        target = min(votes, key=lambda s: (-votes[s], rank[s]))
        for k in members:
            outcome.splits[items[k].id] = target
            outcome.moved += int(items[k].split != target)
    return outcome
