"""CPC-style multi-step InfoNCE: the lower-level loss of BL-JUST.

The authors' code encodes a context window and a future window of raw audio separately, predicts
the encodings of the future frames from the last context frame with a linear predictor, and
scores the predictions with InfoNCE (cosine similarity, temperature 0.1, in-batch negatives).
This module does the same on normalized features with any ESPnet encoder as backbone.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch

from espnet_bilevel.losses.abs_ssl_loss import AbsSSLLoss, BackboneView
from espnet_bilevel.losses.info_nce import info_nce, sample_negative_indices


def gather_segments(feats: torch.Tensor, start: torch.Tensor, seg_len: torch.Tensor) -> torch.Tensor:
    """Cut ``feats[b, start[b] : start[b] + seg_len[b]]`` for every b into a zero-padded batch."""
    bsz, tmax_in, dim = feats.shape
    tmax = int(seg_len.max()) if seg_len.numel() else 0
    steps = torch.arange(tmax, device=feats.device)
    idx = start.to(feats.device)[:, None] + steps[None, :]
    valid = steps[None, :] < seg_len.to(feats.device)[:, None]
    # Positions past a segment's end are clamped only to stay in range; they are zeroed below,
    # so no frame outside the segment can reach the encoder.
    idx = idx.clamp(max=max(tmax_in - 1, 0))
    seg = feats.gather(1, idx[:, :, None].expand(-1, -1, dim))
    return seg.masked_fill(~valid[:, :, None], 0.0)


class CPCLoss(AbsSSLLoss):
    """Multi-step InfoNCE with separately encoded context and future segments (BL-JUST).

    ESPnet encoders (Conformer, Transformer, ...) are bidirectional, so encoding a whole utterance
    and predicting "future" frames from "past" frames would let the context vector see the future.
    Instead, per utterance, a split point p is chosen and two windows are cut from the features:
    context ``[p - C, p)`` and future ``[p, p + Fu)``.  Each window batch goes through the backbone
    on its own; the last valid encoder frame of the context window, c, predicts the k-th encoder
    frame of the future window, z_k (k = 1..prediction_steps), via a linear map.  Every
    (utterance, step) pair is one InfoNCE row.

    The targets z_k are *not* detached: as in the BL-JUST code, ∇g reaches θ through both the
    context path and the target path.  (Detaching would be a different lower-level objective; the
    contrastive negatives keep the target path from collapsing.)

    Options (constructor keyword args / YAML ``ssl_loss_conf``):
        input_size (int): feature dimension F (passed by the model).
        encoder_output_size (int): encoder output dimension D (passed by the model).
        context_frames (int, default 100): context window length in input frames (1 s at a 10 ms
            shift).  The authors' code uses 2 s of raw audio; 1 s suits short synthetic
            utterances.
        future_frames (int, default 48): future window length in input frames; with ×4
            subsampling it yields about 11 encoder frames, more than ``prediction_steps`` needs.
        prediction_steps (int, default 4): K, how many future encoder frames are predicted.
            Utterances whose future window encodes to fewer frames use the ones available.
        predictor (str, default "per_offset"): ``"per_offset"`` = one Linear(D, D) per step k
            (classic CPC W_k); ``"chained"`` = one Linear(D, D) applied k times (the BL-JUST
            code's autoregressive predictor).
        num_negatives (int or None, default None): None = every candidate of the pool (see
            ``negatives_from``); an int K samples K of them per row without replacement
            (clipped to what is available).
        negatives_from (str, default "batch"): ``"batch"`` = the other (utterance, step)
            targets of the whole batch, as in the paper's code; ``"utterance"`` = the other
            targets of the same utterance only.  With "utterance" the loss of an utterance
            depends on that utterance alone (the batch loss is the mean over utterances), which
            makes training independent of batch composition and DDP world size.
        temperature (float, default 0.1): InfoNCE temperature (BL-JUST code's value).
        similarity (str, default "cosine"): ``"cosine"`` (BL-JUST) or ``"dot"``.
        eval_seed (int, default 0): seed of the generator used for negative sampling in eval
            mode, so validation losses are reproducible.

    Short utterances (length L < C + Fu) get both windows shrunk proportionally
    (``C' = floor(L*C/(C+Fu))``, ``Fu' = L - C'``); an utterance for which either window would
    encode to zero frames is skipped.  The split point is uniform over the valid range in
    training and the middle of it in eval mode (deterministic validation).

    Stats: ``acc`` (top-1 accuracy of the positive among its candidates), ``used_frac``
    (fraction of utterances of the batch that were long enough to be used).
    """

    def __init__(
        self,
        input_size: int,
        encoder_output_size: int,
        context_frames: int = 100,
        future_frames: int = 48,
        prediction_steps: int = 4,
        predictor: str = "per_offset",
        num_negatives: Optional[int] = None,
        temperature: float = 0.1,
        similarity: str = "cosine",
        eval_seed: int = 0,
        negatives_from: str = "batch",
    ):
        super().__init__()
        if context_frames < 1 or future_frames < 1:
            raise ValueError("context_frames and future_frames must be >= 1")
        if prediction_steps < 1:
            raise ValueError("prediction_steps must be >= 1")
        if predictor not in ("per_offset", "chained"):
            raise ValueError(f"predictor must be 'per_offset' or 'chained', got {predictor!r}")
        if negatives_from not in ("batch", "utterance"):
            raise ValueError(f"negatives_from must be 'batch' or 'utterance', got {negatives_from!r}")
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
        self.input_size = input_size
        self.encoder_output_size = encoder_output_size
        self.context_frames = context_frames
        self.future_frames = future_frames
        self.prediction_steps = prediction_steps
        self.predictor_type = predictor
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.similarity = similarity
        self.eval_seed = eval_seed
        self.negatives_from = negatives_from
        d = encoder_output_size
        n_maps = prediction_steps if predictor == "per_offset" else 1
        self.predictors = torch.nn.ModuleList([torch.nn.Linear(d, d) for _ in range(n_maps)])

    # ----------------------------------------------------------------------------------------
    def plan_segments(
        self,
        lengths: torch.Tensor,
        backbone: BackboneView,
        generator: Optional[torch.Generator] = None,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Choose the windows of each utterance.

        Returns (context_start, context_len, future_len, used), all (B,) on ``lengths.device``;
        the future window starts at ``context_start + context_len`` (the split point).  Uses the
        global RNG (or ``generator``, or one generator per row in ``generators``) in training
        mode and no randomness in eval mode.
        """
        device = lengths.device
        lens = lengths.detach().long()
        c, fu = self.context_frames, self.future_frames
        short = lens < (c + fu)
        ctx_len = torch.where(short, (lens * c) // (c + fu), torch.full_like(lens, c))
        fut_len = torch.where(short, lens - ctx_len, torch.full_like(lens, fu))
        used = (backbone.output_lengths(ctx_len).to(device) >= 1) & (
            backbone.output_lengths(fut_len).to(device) >= 1
        )
        slack = (lens - ctx_len - fut_len).clamp(min=0)
        if self.training:
            if generators is not None:
                u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(device)
            else:
                u = torch.rand(lens.shape, generator=generator).to(device)
            start = (u * (slack + 1).to(u.dtype)).floor().long().clamp(max=slack)
        else:
            start = slack // 2
        return start, ctx_len, fut_len, used

    def _predict(self, context: torch.Tensor, steps: int) -> torch.Tensor:
        """(U, D) context vectors -> (U, steps, D) predictions of future encoder frames 1..steps."""
        if self.predictor_type == "per_offset":
            return torch.stack([self.predictors[k](context) for k in range(steps)], dim=1)
        preds = []
        h = context
        for _ in range(steps):
            h = self.predictors[0](h)
            preds.append(h)
        return torch.stack(preds, dim=1)

    def _zero_loss(self, feats: torch.Tensor) -> torch.Tensor:
        # Keeps every η parameter in the graph so backward / DDP see a (zero) gradient.
        return sum((p.sum() * 0.0 for p in self.parameters()), feats.sum() * 0.0)

    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        backbone: BackboneView,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        bsz = feats.size(0)
        gen = None
        if not self.training:
            gen = torch.Generator().manual_seed(self.eval_seed)
            generators = None
        start, ctx_len, fut_len, used = self.plan_segments(
            feats_lengths, backbone, generators=generators
        )
        used_frac = used.float().mean() if bsz > 0 else feats.new_zeros(())
        if not bool(used.any()):
            zero = self._zero_loss(feats)
            return zero, {"acc": feats.new_zeros(()), "used_frac": used_frac.detach()}

        sel = used.nonzero(as_tuple=True)[0]
        x = feats[sel]
        start, ctx_len, fut_len = start[sel], ctx_len[sel], fut_len[sel]
        ctx = gather_segments(x, start, ctx_len)
        fut = gather_segments(x, start + ctx_len, fut_len)

        ctx_out, ctx_out_len, _ = backbone.encode(ctx, ctx_len.to(feats_lengths.dtype), False)
        fut_out, fut_out_len, _ = backbone.encode(fut, fut_len.to(feats_lengths.dtype), False)

        u = sel.numel()
        last = (ctx_out_len.long().to(ctx_out.device) - 1).clamp(min=0)
        context = ctx_out[torch.arange(u, device=ctx_out.device), last]  # (U, D)

        k = self.prediction_steps
        preds = self._predict(context, k)  # (U, K, D)
        targets = fut_out[:, :k]
        if targets.size(1) < k:
            targets = torch.cat([targets, targets.new_zeros(u, k - targets.size(1), targets.size(2))], dim=1)
        valid = torch.arange(k, device=preds.device)[None, :] < fut_out_len.long().to(preds.device)[:, None]

        anchors = preds[valid]
        positives = targets[valid]
        if self.negatives_from == "utterance":
            row_utt = torch.arange(u, device=preds.device)[:, None].expand(-1, k)[valid]
            loss, acc = self._utterance_nce(anchors, positives, row_utt, sel, generators, gen)
            return loss, {"acc": acc.detach(), "used_frac": used_frac.detach()}
        if self.num_negatives is None:
            loss, acc = info_nce(anchors, positives, None, self.temperature, self.similarity)
        else:
            pool = torch.zeros(anchors.size(0), dtype=torch.long, device=anchors.device)
            idx, neg_valid = sample_negative_indices(pool, self.num_negatives, generator=gen)
            loss, acc = info_nce(
                anchors, positives, positives[idx], self.temperature, self.similarity, negatives_mask=neg_valid
            )
        return loss, {"acc": acc.detach(), "used_frac": used_frac.detach()}

    def _utterance_nce(self, anchors, positives, row_utt, sel, generators, gen):
        """InfoNCE against the other targets of the same utterance, averaged per utterance
        first, so an utterance's loss does not depend on the rest of the batch."""
        if self.num_negatives is None or generators is None:
            idx, neg_valid = sample_negative_indices(row_utt, self.num_negatives, generator=gen)
        else:
            # draw each utterance's negatives from that utterance's own generator
            n = row_utt.numel()
            k_max = 0
            parts = []
            for j in torch.unique(row_utt).tolist():
                rows = (row_utt == j).nonzero(as_tuple=True)[0]
                i_loc, v_loc = sample_negative_indices(
                    torch.zeros(rows.numel(), dtype=torch.long), self.num_negatives,
                    generator=generators[int(sel[j])],
                )
                parts.append((rows, rows.cpu()[i_loc], v_loc))
                k_max = max(k_max, i_loc.size(1))
            idx = torch.arange(n)[:, None].repeat(1, k_max)
            neg_valid = torch.zeros(n, k_max, dtype=torch.bool)
            for rows, i_glob, v_loc in parts:
                idx[rows.cpu(), : i_glob.size(1)] = i_glob
                neg_valid[rows.cpu(), : v_loc.size(1)] = v_loc
            idx, neg_valid = idx.to(anchors.device), neg_valid.to(anchors.device)
        per_row, acc = info_nce(
            anchors, positives, positives[idx], self.temperature, self.similarity,
            negatives_mask=neg_valid, reduction="none",
        )
        n_utt = int(row_utt.max()) + 1
        sums = per_row.new_zeros(n_utt).index_add(0, row_utt, per_row)
        counts = per_row.new_zeros(n_utt).index_add(0, row_utt, torch.ones_like(per_row))
        return (sums / counts.clamp(min=1)).mean(), acc
