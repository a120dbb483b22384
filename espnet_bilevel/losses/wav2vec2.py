"""wav2vec 2.0 masked contrastive loss with a Gumbel-softmax product quantizer.

Adapted to an ESPnet setting where the backbone consumes normalized filterbank features rather
than a waveform CNN's latents: the quantizer's input is the *unmasked* feature sequence stacked s
frames at a time (s = encoder subsampling), so there is exactly one quantized target per encoder
frame, and masking replaces input frames by a learned embedding before the encoder runs.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet_bilevel.losses.abs_ssl_loss import AbsSSLLoss, BackboneView
from espnet_bilevel.losses.info_nce import info_nce, sample_negative_indices
from espnet_bilevel.losses.masking import compute_span_mask, expand_mask


def diversity_loss(logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Codebook diversity loss of wav2vec 2.0.

    Args:
        logits: (N, G, V) quantizer logits of N vectors, G groups, V entries per group.

    Returns:
        (loss, perplexity) with ``perplexity = sum_g exp(H(mean_n softmax(logits[n, g])))`` and
        ``loss = (G*V - perplexity) / (G*V)``: 0 when every entry of every group is used equally
        often on average, close to 1 when each group always picks one entry.  It uses the soft
        probabilities (not the hard codes) so that it has a gradient.
    """
    n, g, v = logits.shape
    if n == 0:
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    probs = torch.softmax(logits.float(), dim=-1).mean(dim=0)  # (G, V)
    entropy = -(probs * torch.log(probs + 1e-7)).sum(dim=-1)  # (G,)
    perplexity = torch.exp(entropy).sum()
    return (g * v - perplexity) / (g * v), perplexity


class GumbelProductQuantizer(torch.nn.Module):
    """G groups of V learned code vectors, one chosen per group by a (hard) Gumbel softmax.

    In training the choice is a hard one-hot with the straight-through estimator (forward uses the
    discrete code, backward the Gumbel-softmax gradient); in eval it is the argmax, deterministic.
    The G chosen vectors (each ``code_dim / G`` wide) are concatenated.

    Args (no defaults; :class:`Wav2Vec2Loss` passes its options): input_dim (stacked feature
    size F*s), groups (G), entries (V per group), code_dim (concatenated code width, divisible
    by G).
    """

    def __init__(self, input_dim: int, groups: int, entries: int, code_dim: int):
        super().__init__()
        if code_dim % groups != 0:
            raise ValueError(f"codevector_dim={code_dim} must be divisible by codebook_groups={groups}")
        self.groups = groups
        self.entries = entries
        self.logits_proj = torch.nn.Linear(input_dim, groups * entries)
        # Unit-variance logits at init make the first Gumbel draws spread over the codebook.
        torch.nn.init.normal_(self.logits_proj.weight, mean=0.0, std=1.0 / math.sqrt(input_dim))
        torch.nn.init.zeros_(self.logits_proj.bias)
        self.codebook = torch.nn.Parameter(torch.empty(groups, entries, code_dim // groups))
        torch.nn.init.uniform_(self.codebook)

    def forward(self, x: torch.Tensor, temperature: float) -> Dict[str, torch.Tensor]:
        """x (N, input_dim) -> dict(q (N, code_dim), logits (N, G, V), codes, argmax (N, G)).

        ``codes`` are the entries actually used for ``q`` (Gumbel samples in training),
        ``argmax`` the noise-free choice (what eval uses and what the perplexity stat reports).
        """
        n = x.size(0)
        logits = self.logits_proj(x).view(n, self.groups, self.entries)
        argmax = logits.argmax(dim=-1)
        if self.training:
            onehot = F.gumbel_softmax(logits.float(), tau=temperature, hard=True, dim=-1).to(x.dtype)
            codes = onehot.detach().argmax(dim=-1)
        else:
            onehot = F.one_hot(argmax, self.entries).to(x.dtype)
            codes = argmax
        # (N, G, V) x (G, V, d) -> (N, G, d)
        q = torch.einsum("ngv,gvd->ngd", onehot, self.codebook.to(x.dtype)).reshape(n, -1)
        return {"q": q, "logits": logits, "codes": codes, "argmax": argmax}


def code_perplexity(codes: torch.Tensor, entries: int) -> torch.Tensor:
    """Perplexity of the hard code usage, summed over groups (codes: (N, G))."""
    if codes.numel() == 0:
        return torch.zeros((), device=codes.device)
    counts = F.one_hot(codes, entries).float().mean(dim=0)  # (G, V)
    entropy = -(counts * torch.log(counts + 1e-7)).sum(dim=-1)
    return torch.exp(entropy).sum()


class Wav2Vec2Loss(AbsSSLLoss):
    """wav2vec 2.0 masked contrastive loss (+ codebook diversity) as a lower-level loss.

    Procedure: draw a span mask at the encoder frame rate, expand it to input frames and replace
    the masked input frames by the learned ``mask_emb`` (F); encode.  For each masked encoder
    frame t, the context vector ``final_proj(out_t)`` is contrasted (cosine / ``temperature``)
    against the quantized target of the *unmasked* input frames ``[s*t, s*t+s)`` (stacked to
    F*s, quantized, projected by ``project_q``) and against distractors = targets of other masked
    frames of the same utterance; distractors identical to the positive (same codes) are dropped,
    as in wav2vec 2.0.  Loss = contrastive + ``diversity_weight`` * diversity.

    η (this module) owns mask_emb, the quantizer, project_q and final_proj; the quantizer sees
    only raw features, so its gradient comes through the straight-through estimator of the
    targets and through the diversity loss.

    Options (constructor keyword args / YAML ``ssl_loss_conf``); paper (Base) values in brackets:
        input_size (int): feature dimension F (passed by the model).
        encoder_output_size (int): encoder output dimension D (passed by the model).
        subsampling (int, default 4): input frames per encoder frame; must equal the backbone's
            (checked at every call).  Needed at construction to size the quantizer input F*s.
        mask_prob (float, default 0.5) [0.65]: expected fraction of encoder frames that start a
            span, times the span; with overlaps about 1-exp(-p) of the frames get masked.
        mask_span (int, default 5) [10]: span length in encoder frames (5 × 40 ms = 200 ms);
            the paper's 10 would mask most of a 1-2 s synthetic utterance in one or two spans.
        min_masks (int, default 1): at least this many spans per utterance when it is long enough.
        num_negatives (int, default 100) [100]: distractors per masked frame, clipped to the
            number of other masked frames of the utterance.
        temperature (float, default 0.1) [0.1]: κ of the contrastive logits.
        final_dim (int, default 128) [256]: dimension of the contrastive space; smaller for the
            tiny (d = 64-144) encoders of the CPU experiments.
        codebook_groups (int, default 2) [2]: G.
        codebook_entries (int, default 64) [320]: V per group; 64² = 4096 combinations are
            plenty for a synthetic few-speaker corpus and keep the diversity term attainable.
        codevector_dim (int or None, default None) [= final_dim]: width of the concatenated code
            vectors; None means final_dim.
        gumbel_temp_start (float, default 2.0) [2.0], gumbel_temp_end (float, default 0.5) [0.5],
        gumbel_temp_decay (float, default 0.999995) [0.999995]: Gumbel temperature
            ``max(start * decay**n, end)`` after n training forward passes.  n is the persistent
            buffer ``num_updates`` (saved/restored with the model); it advances on every forward
            in training mode (one per optimizer step unless gradient accumulation is used).
        diversity_weight (float, default 0.1) [0.1]: weight α of the diversity loss.
        eval_seed (int, default 0): seed for masks and negatives in eval mode, so that validation
            is deterministic.

    Stats: ``acc`` (top-1 accuracy of the true target), ``contrastive_loss``, ``diversity_loss``,
    ``code_perplexity`` (perplexity of the hard codes, summed over groups), ``prob_perplexity``
    (the soft one used by the diversity loss), ``gumbel_temp``, ``mask_frac`` (masked / valid
    encoder frames).
    """

    def __init__(
        self,
        input_size: int,
        encoder_output_size: int,
        subsampling: int = 4,
        mask_prob: float = 0.5,
        mask_span: int = 5,
        min_masks: int = 1,
        num_negatives: int = 100,
        temperature: float = 0.1,
        final_dim: int = 128,
        codebook_groups: int = 2,
        codebook_entries: int = 64,
        codevector_dim: Optional[int] = None,
        gumbel_temp_start: float = 2.0,
        gumbel_temp_end: float = 0.5,
        gumbel_temp_decay: float = 0.999995,
        diversity_weight: float = 0.1,
        eval_seed: int = 0,
    ):
        super().__init__()
        if subsampling < 1:
            raise ValueError("subsampling must be >= 1")
        if num_negatives < 0:
            raise ValueError("num_negatives must be >= 0")
        self.input_size = input_size
        self.encoder_output_size = encoder_output_size
        self.subsampling = subsampling
        self.mask_prob = mask_prob
        self.mask_span = mask_span
        self.min_masks = min_masks
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.gumbel_temp_start = gumbel_temp_start
        self.gumbel_temp_end = gumbel_temp_end
        self.gumbel_temp_decay = gumbel_temp_decay
        self.diversity_weight = diversity_weight
        self.eval_seed = eval_seed
        code_dim = final_dim if codevector_dim is None else codevector_dim

        # Normalized features are ~N(0, 1) per dimension, so a N(0, 1) init keeps the mask
        # embedding in the range the encoder sees for real frames.
        self.mask_emb = torch.nn.Parameter(torch.randn(input_size))
        self.quantizer = GumbelProductQuantizer(input_size * subsampling, codebook_groups, codebook_entries, code_dim)
        self.project_q = torch.nn.Linear(code_dim, final_dim)
        self.final_proj = torch.nn.Linear(encoder_output_size, final_dim)
        # Training-step counter of the temperature schedule; a buffer so checkpoints resume the
        # schedule where it was.
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------------------------
    def gumbel_temperature(self, num_updates: Optional[int] = None) -> float:
        n = int(self.num_updates) if num_updates is None else num_updates
        return max(self.gumbel_temp_start * self.gumbel_temp_decay**n, self.gumbel_temp_end)

    def draw_mask(
        self,
        feats_lengths: torch.Tensor,
        input_len: int,
        backbone: BackboneView,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (mask_out (B, T'), mask_in (B, input_len), out_lens (B,))."""
        out_lens = backbone.output_lengths(feats_lengths).long()
        t_out = int(out_lens.max()) if out_lens.numel() else 0
        mask_out = compute_span_mask(
            out_lens, t_out, self.mask_prob, self.mask_span, self.min_masks, generator=generator
        )
        mask_in = expand_mask(mask_out, self.subsampling, input_len)
        return mask_out, mask_in, out_lens

    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        backbone: BackboneView,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        # ``generators`` is accepted for the common interface but not used: wav2vec 2.0's
        # diversity loss and frame-weighted contrastive mean are batch-level by design, so this
        # loss depends on batch composition (and on the DDP world size) whatever the masks.
        if backbone.subsampling != self.subsampling:
            raise ValueError(
                f"Wav2Vec2Loss was built for subsampling={self.subsampling} but the backbone "
                f"subsamples by {backbone.subsampling}; set ssl_loss_conf.subsampling"
            )
        s = self.subsampling
        bsz, t_in, fdim = feats.shape
        gen = None if self.training else torch.Generator().manual_seed(self.eval_seed)
        temp = self.gumbel_temperature()

        mask_out, mask_in, out_lens = self.draw_mask(feats_lengths, t_in, backbone, generator=gen)
        t_out = mask_out.size(1)
        masked_feats = torch.where(mask_in[:, :, None], self.mask_emb.to(feats.dtype), feats)
        enc, enc_lens, _ = backbone.encode(masked_feats, feats_lengths, False)
        # The mask was drawn from output_lengths before encoding; if those disagree with what the
        # encoder returns, masks and targets would be silently misaligned, so fail loudly.
        if enc.size(1) < t_out or not torch.equal(enc_lens.long().cpu(), out_lens.long().cpu()):
            raise RuntimeError(
                f"backbone.output_lengths {out_lens.tolist()} disagrees with the encoder's output "
                f"lengths {enc_lens.tolist()} (padded length {enc.size(1)})"
            )

        # Targets: unmasked input stacked s frames per encoder frame (pad if s*T' > T_in).
        need = s * t_out
        src = feats if need <= t_in else torch.cat([feats, feats.new_zeros(bsz, need - t_in, fdim)], dim=1)
        stacked = src[:, :need].reshape(bsz, t_out, s * fdim)

        valid_frames = torch.arange(t_out, device=feats.device)[None, :] < out_lens.to(feats.device)[:, None]
        mask_out = mask_out.to(feats.device) & valid_frames
        n_valid = valid_frames.sum().clamp(min=1)
        mask_frac = mask_out.sum().float() / n_valid.float()

        if self.training:
            self.num_updates += 1

        if not bool(mask_out.any()):
            zero = sum((p.sum() * 0.0 for p in self.parameters()), feats.sum() * 0.0)
            zero = zero + enc.sum() * 0.0
            z = feats.new_zeros(())
            stats = {
                "acc": z, "contrastive_loss": z, "diversity_loss": z, "code_perplexity": z,
                "prob_perplexity": z, "gumbel_temp": feats.new_tensor(temp), "mask_frac": mask_frac.detach(),
            }
            return zero, stats

        # Row order of boolean indexing is (utterance, time), so group ids = utterance index.
        utt = torch.arange(bsz, device=feats.device)[:, None].expand(-1, t_out)[mask_out]
        quant = self.quantizer(stacked[mask_out], temp)
        targets = self.project_q(quant["q"])  # (N, final_dim)
        context = self.final_proj(enc[:, :t_out][mask_out])  # (N, final_dim)

        idx, neg_valid = sample_negative_indices(utt, self.num_negatives, generator=gen)
        negatives = targets[idx]  # (N, K, final_dim)
        # A distractor with the same codes as the positive is the positive: it cannot be told
        # apart and would only push the loss toward log(K+1), so drop it (wav2vec 2.0 rule).
        same = (quant["codes"][idx] == quant["codes"][:, None, :]).all(dim=-1)
        neg_valid = neg_valid & ~same
        contrastive, acc = info_nce(context, targets, negatives, self.temperature, "cosine", negatives_mask=neg_valid)

        div, prob_ppl = diversity_loss(quant["logits"])
        loss = contrastive + self.diversity_weight * div
        stats = {
            "acc": acc.detach(),
            "contrastive_loss": contrastive.detach(),
            "diversity_loss": div.detach(),
            "code_perplexity": code_perplexity(quant["argmax"], self.quantizer.entries).detach(),
            "prob_perplexity": prob_ppl.detach(),
            "gumbel_temp": feats.new_tensor(temp),
            "mask_frac": mask_frac.detach(),
        }
        return loss, stats
