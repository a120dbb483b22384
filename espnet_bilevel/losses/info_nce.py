"""InfoNCE (the contrastive cross-entropy shared by the CPC and wav2vec 2.0 losses) and a sampler
for negative indices.

Both SSL losses reduce to the same computation: for every anchor (a prediction or a context
vector) there is one positive target and a set of distractors; the score of each candidate is a
similarity divided by a temperature and the loss is the cross-entropy of picking the positive.
Keeping it as one pure function lets the unit tests check it against hand-computed numbers once,
independently of any encoder.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

# Guards the cosine normalization against all-zero vectors (e.g. zero padding that slipped in);
# small enough not to change the similarity of any real feature vector.
_COSINE_EPS = 1e-8


def _pairwise_similarity(a: torch.Tensor, b: torch.Tensor, similarity: str) -> torch.Tensor:
    """Similarity between the last dimension of broadcastable tensors ``a`` and ``b``."""
    if similarity == "cosine":
        a = F.normalize(a, dim=-1, eps=_COSINE_EPS)
        b = F.normalize(b, dim=-1, eps=_COSINE_EPS)
    elif similarity != "dot":
        raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
    return (a * b).sum(-1)


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: Optional[torch.Tensor] = None,
    temperature: float = 0.1,
    similarity: str = "cosine",
    negatives_mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE loss with the positive at logit index 0.

    Args:
        anchors: (N, D) predictions / context vectors.
        positives: (N, D) the true target of each anchor.
        negatives: (N, K, D) distractors per anchor, or ``None`` for in-batch negatives: each
            anchor is then contrasted against the positives of all *other* rows (the
            ``info-nce-pytorch`` convention that the BL-JUST code uses).
        temperature: logits are ``similarity / temperature``.
        similarity: ``"cosine"`` or ``"dot"``.
        negatives_mask: optional (N, K) bool, True where a negative is valid.  Invalid negatives
            get a logit of -inf, i.e. they are removed from the softmax; this is how rows with
            fewer available distractors than K, and distractors identical to the positive (the
            wav2vec 2.0 rule), are handled without ragged tensors.  Only allowed with explicit
            ``negatives``.
        reduction: ``"mean"`` over the N rows, or ``"none"`` for the (N,) per-row losses.

    Returns:
        (loss, accuracy): the cross-entropy averaged over the N rows, and the fraction of rows
        whose positive logit is strictly larger than every valid negative logit (a tie counts as
        a miss, so a collapsed representation does not look accurate).  Accuracy is detached.
        With N == 0 both are 0 (and the loss keeps the graph so ``backward`` still works).
    """
    if anchors.dim() != 2 or positives.shape != anchors.shape:
        raise ValueError(f"anchors/positives must both be (N, D), got {anchors.shape} / {positives.shape}")
    n = anchors.size(0)
    # Similarities in float32 even under autocast: exp() of (cos / 0.1) spans e^{+-10}, which is
    # fine in fp32, and logsumexp inside cross_entropy keeps it stable for any temperature.
    anchors = anchors.float()
    positives = positives.float()
    if n == 0:
        zero = anchors.sum() * 0.0 + positives.sum() * 0.0
        return zero, zero.detach()

    if negatives is None:
        if negatives_mask is not None:
            raise ValueError("negatives_mask is only supported with explicit negatives")
        # (N, N) matrix of anchor_i vs positive_j; the diagonal holds the positives.
        sim = _pairwise_similarity(anchors[:, None, :], positives[None, :, :], similarity)
        logits = sim / temperature
        eye = torch.eye(n, dtype=torch.bool, device=logits.device)
        pos = logits.diagonal()
        # Put the positive first, then the N-1 off-diagonal entries of the row.
        neg = logits.masked_select(~eye).view(n, n - 1)
        logits = torch.cat([pos[:, None], neg], dim=1)
    else:
        if negatives.dim() != 3 or negatives.shape[0] != n or negatives.shape[2] != anchors.shape[1]:
            raise ValueError(f"negatives must be (N, K, D) = ({n}, K, {anchors.shape[1]}), got {negatives.shape}")
        negatives = negatives.float()
        pos = _pairwise_similarity(anchors, positives, similarity) / temperature
        neg = _pairwise_similarity(anchors[:, None, :], negatives, similarity) / temperature
        if negatives_mask is not None:
            if negatives_mask.shape != neg.shape:
                raise ValueError(f"negatives_mask must be {tuple(neg.shape)}, got {tuple(negatives_mask.shape)}")
            neg = neg.masked_fill(~negatives_mask.bool(), float("-inf"))
        logits = torch.cat([pos[:, None], neg], dim=1)

    target = torch.zeros(n, dtype=torch.long, device=logits.device)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    loss = F.cross_entropy(logits, target, reduction=reduction)
    with torch.no_grad():
        if logits.size(1) > 1:
            correct = logits[:, 0] > logits[:, 1:].max(dim=1).values
        else:
            correct = torch.ones(n, dtype=torch.bool, device=logits.device)
        acc = correct.float().mean()
    return loss, acc


def sample_negative_indices(
    groups: torch.Tensor,
    num_negatives: Optional[int],
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw negatives for each row from the other rows of the same pool.

    Args:
        groups: (N,) integer pool id of each row (e.g. the utterance index of a masked frame, or
            all zeros for "any other row of the batch").  A row never draws itself.
        num_negatives: K, the number of distinct negatives per row (drawn without replacement),
            clipped to the pool size minus one; ``None`` takes every other member of the pool.
        generator: optional CPU ``torch.Generator`` for reproducible draws (used in eval mode).

    Returns:
        (indices, valid): (N, K_out) long row indices into the same N rows and an (N, K_out) bool
        mask; K_out is the largest number any row could draw.  Rows of smaller pools are padded
        with their own index and ``valid=False`` (pass ``valid`` as ``negatives_mask`` to
        :func:`info_nce`).
    """
    if num_negatives is not None and num_negatives < 0:
        raise ValueError("num_negatives must be >= 0 or None")
    device = groups.device
    groups_cpu = groups.detach().long().cpu()
    n = groups_cpu.numel()
    uniq, counts = torch.unique(groups_cpu, return_counts=True)
    max_others = int(counts.max().item()) - 1 if n > 0 else 0
    k_out = max_others if num_negatives is None else min(num_negatives, max_others)
    # Padding points at the row itself: a harmless, in-range index that is marked invalid.
    indices = torch.arange(n).unsqueeze(1).repeat(1, k_out)
    valid = torch.zeros(n, k_out, dtype=torch.bool)
    if k_out == 0:
        return indices.to(device), valid.to(device)

    for g in uniq.tolist():
        members = (groups_cpu == g).nonzero(as_tuple=True)[0]
        m = members.numel()
        k = (m - 1) if num_negatives is None else min(num_negatives, m - 1)
        if k <= 0:
            continue
        if num_negatives is None:
            # Everyone else, no randomness needed.
            j = torch.arange(m - 1).unsqueeze(0).expand(m, -1)
        else:
            # k distinct positions among the m-1 others: top-k of i.i.d. uniform scores is a
            # uniform draw without replacement, vectorized over the rows of the pool.
            scores = torch.rand(m, m - 1, generator=generator)
            j = scores.topk(k, dim=1).indices
        # Map "j-th other member" to a local index that skips the row itself.
        local = j + (j >= torch.arange(m).unsqueeze(1)).long()
        indices[members, :k] = members[local]
        valid[members, :k] = True
    return indices.to(device), valid.to(device)
