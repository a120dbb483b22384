"""Span masks for masked-prediction SSL losses (wav2vec 2.0 style).

Masks are drawn at the *encoder* frame rate (the rate at which targets and predictions live) and
then expanded to input frames, because the masked input must be built before the encoder runs.
"""
from typing import Optional

import torch


def compute_span_mask(
    lengths: torch.Tensor,
    max_len: int,
    mask_prob: float,
    span: int,
    min_masks: int = 1,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Random span mask, wav2vec 2.0 style.

    For an utterance of valid length L, the number of span starts is
    ``floor(mask_prob * L / span + u)`` with ``u ~ U[0, 1)`` (so its expectation is exactly
    ``mask_prob * L / span``), raised to ``min_masks``, and capped by the number of distinct
    start positions ``L - span + 1``.  Starts are distinct and uniform in ``[0, L - span]``, so a
    span never crosses the valid length; spans may overlap, which is why the masked fraction is
    below ``mask_prob`` (about ``1 - exp(-mask_prob)`` for long utterances).  An utterance shorter
    than one span gets no mask: a partial span would silently change the masking statistics and
    masking the whole utterance would leave nothing to predict from.

    Args:
        lengths: (B,) valid lengths (in the frames the mask is for).
        max_len: T, the padded length of the returned mask (>= max(lengths)).
        mask_prob: expected fraction of frames chosen as span starts times ``span``.
        span: span length in frames (>= 1).
        min_masks: lower bound on the number of spans when the length allows one.
        generator: optional CPU ``torch.Generator`` for reproducible masks.

    Returns:
        (B, max_len) bool tensor on ``lengths.device``, True = masked.
    """
    if span < 1:
        raise ValueError("span must be >= 1")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError("mask_prob must be in [0, 1]")
    lens = lengths.detach().long().cpu()
    if lens.numel() and int(lens.max()) > max_len:
        raise ValueError(f"max_len={max_len} is shorter than the longest length {int(lens.max())}")
    bsz = lens.numel()
    mask = torch.zeros(bsz, max_len, dtype=torch.bool)
    offsets = torch.arange(span)
    for b in range(bsz):
        length = int(lens[b])
        num_starts_avail = length - span + 1
        if num_starts_avail <= 0:
            continue
        u = float(torch.rand((), generator=generator))
        n = int(mask_prob * length / span + u)
        n = min(max(n, min_masks), num_starts_avail)
        if n <= 0:
            continue
        starts = torch.randperm(num_starts_avail, generator=generator)[:n]
        mask[b, (starts[:, None] + offsets[None, :]).reshape(-1)] = True
    return mask.to(lengths.device)


def expand_mask(mask_out: torch.Tensor, subsampling: int, input_len: int) -> torch.Tensor:
    """Expand an encoder-rate mask (B, T') to input frames (B, input_len).

    Encoder frame t is taken to stand for input frames ``[s*t, s*t + s)``; input frames beyond
    ``s*T'`` (the remainder that subsampling drops or only partly uses) stay unmasked.  With a
    convolutional front end the receptive field of frame t is a bit wider than s frames, so the
    masked input is a close, not an exact, cover of what frame t sees; that is the usual choice.
    """
    if subsampling < 1:
        raise ValueError("subsampling must be >= 1")
    expanded = mask_out.repeat_interleave(subsampling, dim=1)
    if expanded.size(1) >= input_len:
        return expanded[:, :input_len]
    pad = expanded.new_zeros(expanded.size(0), input_len - expanded.size(1))
    return torch.cat([expanded, pad], dim=1)
