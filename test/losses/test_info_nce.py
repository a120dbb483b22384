import math

import pytest
import torch

from espnet_bilevel.losses.info_nce import info_nce, sample_negative_indices


def _ce_row(pos_logit, neg_logits):
    """-log softmax of the positive, written out by hand."""
    return -pos_logit + math.log(math.exp(pos_logit) + sum(math.exp(x) for x in neg_logits))


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_explicit_negatives_cosine_hand_computed(temperature):
    anchors = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positives = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]]])
    # cosines: row 0: pos 1/sqrt2, negs 0, -1; row 1: pos 1, negs 0, 1/sqrt2
    r = 1 / math.sqrt(2)
    expected = 0.5 * (
        _ce_row(r / temperature, [0.0, -1.0 / temperature])
        + _ce_row(1.0 / temperature, [0.0, r / temperature])
    )
    loss, acc = info_nce(anchors, positives, negatives, temperature=temperature)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert acc.item() == 1.0


def test_accuracy_counts_ties_and_wins():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # row 0: a negative ties the positive (cos 1) -> miss; row 1: negative beats it -> miss
    negatives = torch.tensor([[[2.0, 0.0]], [[0.0, 5.0]]])
    _, acc = info_nce(anchors, positives, negatives)
    assert acc.item() == 0.0
    negatives = torch.tensor([[[0.0, 1.0]], [[0.0, 5.0]]])
    _, acc = info_nce(anchors, positives, negatives)
    assert acc.item() == 0.5


def test_in_batch_negatives_hand_computed():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positives = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    t = 0.1

    def cos(a, b):
        return (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))

    a, p = anchors.tolist(), positives.tolist()
    rows = []
    for i in range(3):
        pos = cos(a[i], p[i]) / t
        negs = [cos(a[i], p[j]) / t for j in range(3) if j != i]
        rows.append(_ce_row(pos, negs))
    loss, acc = info_nce(anchors, positives, None, temperature=t)
    assert loss.item() == pytest.approx(sum(rows) / 3, abs=1e-6)
    # row 0 candidates: p0 -> 1 (pos), p1 -> 0.707, p2 -> -1 => win
    # row 1 candidates: p1 -> 0.707 (pos), p0 -> 0, p2 -> 0  => win
    # row 2 candidates: p2 -> -0.707 (pos), p0 -> 0.707, p1 -> 1 => miss
    assert acc.item() == pytest.approx(2 / 3)


def test_dot_similarity_hand_computed():
    anchors = torch.tensor([[1.0, 2.0]])
    positives = torch.tensor([[0.5, 0.5]])
    negatives = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])
    loss, _ = info_nce(anchors, positives, negatives, temperature=1.0, similarity="dot")
    assert loss.item() == pytest.approx(_ce_row(1.5, [1.0, -2.0]), abs=1e-6)


def test_negatives_mask_removes_candidates():
    anchors = torch.tensor([[1.0, 0.0]])
    positives = torch.tensor([[1.0, 1.0]])
    negatives = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    loss_masked, acc = info_nce(anchors, positives, negatives, negatives_mask=torch.tensor([[True, False]]))
    loss_ref, _ = info_nce(anchors, positives, negatives[:, :1])
    assert loss_masked.item() == pytest.approx(loss_ref.item(), abs=1e-7)
    assert acc.item() == 1.0  # the masked-out negative (cos 1) would have beaten the positive
    # all negatives invalid: only the positive is left, loss 0
    loss0, _ = info_nce(anchors, positives, negatives, negatives_mask=torch.zeros(1, 2, dtype=torch.bool))
    assert loss0.item() == pytest.approx(0.0, abs=1e-7)


def test_numerically_stable_at_tiny_temperature():
    torch.manual_seed(0)
    a = torch.randn(5, 4, requires_grad=True)
    p = torch.randn(5, 4)
    loss, _ = info_nce(a, p, None, temperature=1e-4)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(a.grad).all()


def test_empty_batch_is_zero_and_backpropagates():
    a = torch.zeros(0, 3, requires_grad=True)
    loss, acc = info_nce(a, torch.zeros(0, 3), None)
    assert loss.item() == 0.0 and acc.item() == 0.0
    loss.backward()


def test_sample_negatives_all_others():
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    idx, valid = sample_negative_indices(groups, None)
    assert idx.shape == (6, 2)
    assert valid.sum(1).tolist() == [2, 2, 2, 1, 1, 0]
    for i in range(6):
        chosen = idx[i][valid[i]].tolist()
        assert i not in chosen
        assert all(groups[j] == groups[i] for j in chosen)
        assert len(set(chosen)) == len(chosen)
    assert sorted(idx[0][valid[0]].tolist()) == [1, 2]


def test_sample_negatives_k_clipped_distinct_and_deterministic():
    groups = torch.tensor([0] * 10 + [1] * 3)
    idx, valid = sample_negative_indices(groups, 4, generator=torch.Generator().manual_seed(1))
    assert idx.shape == (13, 4)
    assert valid[:10].all() and valid[10:].sum(1).tolist() == [2, 2, 2]
    for i in range(13):
        chosen = idx[i][valid[i]].tolist()
        assert i not in chosen and len(set(chosen)) == len(chosen)
        assert all(groups[j] == groups[i] for j in chosen)
    idx2, _ = sample_negative_indices(groups, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(idx, idx2)
    # asking for more than exists: clipped
    idx3, valid3 = sample_negative_indices(groups, 100)
    assert idx3.shape == (13, 9) and valid3.sum().item() == 10 * 9 + 3 * 2


def test_sample_negatives_uniform_coverage():
    # every other member should be drawn about equally often
    groups = torch.zeros(5, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(400):
        idx, _ = sample_negative_indices(groups, 1, generator=gen)
        counts[idx[0, 0]] += 1
    assert counts[0] == 0
    assert (counts[1:] > 60).all()
