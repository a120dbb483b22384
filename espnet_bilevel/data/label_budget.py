"""Labeled subsets of a fixed size, balanced over speaker groups (for label-budget curves).

A label-budget curve (WER against the number of labeled utterances) only means something if the
smaller sets are not also narrower: taking the first N sorted ids of the embedded corpus would
drop whole domains. :func:`balanced_utt_ids` therefore deals utterances out round-robin over
groups (by default the speaker-id prefix before the first ``_``, which is the domain name in the
embedded corpus), in a seeded random order inside each group, and every smaller budget is a
prefix of every larger one (nested subsets, so the curve compares like with like).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List

from espnet_bilevel.data.kaldi_dir import DataError, PathLike, read_data_dir, subset_data_dir


def speaker_prefix(speaker: str) -> str:
    """Group of a speaker id: the part before the first ``_`` (the domain in the embedded corpus)."""
    return speaker.split("_", 1)[0]


def balanced_utt_ids(
    utt2spk: Dict[str, str], n: int, seed: int = 0, group_of: Callable[[str], str] = speaker_prefix
) -> List[str]:
    """``n`` utterance ids dealt round-robin over speaker groups (sorted result).

    For a fixed ``seed`` the selection for a smaller ``n`` is a subset of the one for a larger ``n``.
    """
    if n <= 0:
        raise DataError(f"label budget must be positive, got {n}")
    if n > len(utt2spk):
        raise DataError(f"label budget {n} exceeds the {len(utt2spk)} utterances available")
    groups: Dict[str, List[str]] = defaultdict(list)
    for utt in sorted(utt2spk):
        groups[group_of(utt2spk[utt])].append(utt)
    rng = random.Random(seed)
    queues = []
    for name in sorted(groups):
        ids = groups[name]
        rng.shuffle(ids)
        queues.append(ids)
    order: List[str] = []
    while len(order) < len(utt2spk):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return sorted(order[:n])


def write_budget_subset(src: PathLike, dst: PathLike, n: int, seed: int = 0) -> Path:
    """Write the ``n``-utterance balanced subset of data dir ``src`` to ``dst`` (atomically)."""
    data = read_data_dir(src, require_text=True)
    try:
        ids = balanced_utt_ids(data.utt2spk, n, seed=seed)
    except DataError as exc:
        raise DataError(f"{src}: {exc}") from None
    return subset_data_dir(src, dst, ids)


def group_counts(utt2spk: Dict[str, str], ids: List[str], group_of: Callable[[str], str] = speaker_prefix) -> Dict[str, int]:
    """How many of ``ids`` fall in each group (for logging)."""
    counts: Dict[str, int] = defaultdict(int)
    for utt in ids:
        counts[group_of(utt2spk[utt])] += 1
    return dict(sorted(counts.items()))
