"""Synthetic inputs shared by the SSL-loss tests (imported by name: pytest puts this directory on
sys.path because test/losses has no __init__.py)."""
from typing import List, Sequence, Tuple

import torch


def random_padded_batch(input_size: int, lengths: Sequence[int] = (160, 120, 100),
                        seed: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gaussian features (B, max(lengths), input_size), exactly zero past each utterance's length,
    and the lengths as a tensor: the padding is zero so that a loss reading it would show."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    feats = torch.randn(len(lengths), int(lengths.max()), input_size, generator=g)
    return feats * (torch.arange(feats.size(1))[None, :, None] < lengths[:, None, None]), lengths


def seeded_generators(seeds: Sequence[int]) -> List[torch.Generator]:
    """One torch.Generator per utterance, for the losses' per-utterance masking and sampling."""
    return [torch.Generator().manual_seed(s) for s in seeds]
