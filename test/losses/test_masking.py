import pytest
import torch

from espnet_bilevel.losses.masking import compute_span_mask, expand_mask


def _spans_per_row(mask_row):
    """Number of maximal runs of True (a lower bound on the number of spans drawn)."""
    m = mask_row.long()
    return int(((m[1:] - m[:-1]) == 1).sum() + m[0])


def test_never_past_length_and_padding_unmasked():
    lengths = torch.tensor([50, 23, 7, 3])
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        mask = compute_span_mask(lengths, 60, mask_prob=0.65, span=5, generator=gen)
        assert mask.shape == (4, 60) and mask.dtype == torch.bool
        for b, length in enumerate(lengths.tolist()):
            assert not mask[b, length:].any()
        assert not mask[3].any()  # shorter than one span: left unmasked


def test_expected_count_of_spans():
    # with span 1 no two spans can merge, so the masked count is exactly the number of starts,
    # whose mean is mask_prob * L / span
    lengths = torch.full((400,), 100)
    gen = torch.Generator().manual_seed(0)
    mask = compute_span_mask(lengths, 100, mask_prob=0.3, span=1, min_masks=0, generator=gen)
    counts = mask.sum(1).float()
    assert counts.min() >= 30 and counts.max() <= 31  # floor(30 + u)
    assert counts.mean().item() == pytest.approx(30.0, abs=1.0)
    # span > 1: masked frames between n and n*span where n = floor(p*L/span + u)
    mask = compute_span_mask(lengths, 100, mask_prob=0.5, span=5, min_masks=0, generator=gen)
    counts = mask.sum(1)
    assert counts.min() >= 5 and counts.max() <= 11 * 5
    # the masked fraction is below mask_prob because spans overlap, near 1 - exp(-p)
    frac = mask.float().mean().item()
    assert 0.3 < frac < 0.5


def test_min_masks_and_cap():
    lengths = torch.tensor([12, 6, 5])
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        mask = compute_span_mask(lengths, 12, mask_prob=0.0, span=5, min_masks=1, generator=gen)
        # exactly one span of 5 where the length allows it
        assert mask.sum(1).tolist() == [5, 5, 5]
        assert _spans_per_row(mask[0]) == 1
    # asking for far more spans than start positions: capped, so everything valid is masked
    mask = compute_span_mask(torch.tensor([6]), 8, mask_prob=1.0, span=5, min_masks=10, generator=gen)
    assert mask[0].tolist() == [True] * 6 + [False] * 2


def test_determinism_with_generator():
    lengths = torch.tensor([40, 33, 17])
    m1 = compute_span_mask(lengths, 40, 0.5, 4, generator=torch.Generator().manual_seed(7))
    m2 = compute_span_mask(lengths, 40, 0.5, 4, generator=torch.Generator().manual_seed(7))
    m3 = compute_span_mask(lengths, 40, 0.5, 4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(m1, m2)
    assert not torch.equal(m1, m3)


def test_expand_mask_exact():
    mask_out = torch.tensor([[True, False, True], [False, True, False]])
    out = expand_mask(mask_out, 2, 7)
    expected = torch.tensor(
        [
            [True, True, False, False, True, True, False],
            [False, False, True, True, False, False, False],
        ]
    )
    assert torch.equal(out, expected)
    # input shorter than s*T' is truncated
    assert torch.equal(expand_mask(mask_out, 2, 5), expected[:, :5])
