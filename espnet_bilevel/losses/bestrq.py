"""BEST-RQ masked prediction: the anchor (lower-level) loss of BiRQ.

Targets come from a *frozen* random-projection quantizer (RPQ) applied to the unmasked input
features, so they never depend on the backbone θ: a label is an integer computed from the
features alone. (``quantizer: online_kmeans`` swaps the random quantizer for a k-means codebook
fitted on the first training batches and then frozen; the labels stay θ-free.)  The encoder
sees the features with span-masked frames replaced by small Gaussian noise and a linear head
predicts the label of every masked encoder frame.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet_bilevel.losses.abs_ssl_loss import AbsSSLLoss, BackboneView
from espnet_bilevel.losses.masking import compute_span_mask, expand_mask
from espnet_bilevel.losses.online_kmeans import OnlineKMeansQuantizer

QUANTIZERS = ("random_projection", "online_kmeans")


def random_projection_quantizer(
    num_codebooks: int, input_dim: int, codebook_size: int, codebook_dim: int, seed: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frozen RPQ tensors drawn from their own generator (never the global RNG).

    Returns (projection (C, input_dim, codebook_dim), codebook (C, codebook_size, codebook_dim)).
    The projection is Xavier-uniform; codebook entries are standard-normal vectors scaled to unit
    L2 norm (i.e. uniform on the sphere).  The same ``seed`` gives the same tensors on every run
    and every rank, which is what makes the targets a fixed function of the input.
    """
    gen = torch.Generator().manual_seed(int(seed))
    projection = torch.empty(num_codebooks, input_dim, codebook_dim)
    for c in range(num_codebooks):
        torch.nn.init.xavier_uniform_(projection[c], generator=gen)
    codebook = F.normalize(torch.randn(num_codebooks, codebook_size, codebook_dim, generator=gen), dim=-1)
    return projection, codebook


def code_usage_stats(labels: torch.Tensor, codebook_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Codebook usage of a set of hard labels.

    Args:
        labels: (N,) or (N, C) integer codes (C codebooks of ``codebook_size`` entries each).
    Returns:
        (entropy, usage): the entropy in nats of the empirical label histogram (0·log 0 = 0) and
        the fraction of entries used at least once, both averaged over the C codebooks.  Entropy
        log(codebook_size) = uniform usage, 0 = collapse onto one entry.
    """
    if labels.dim() == 1:
        labels = labels[:, None]
    if labels.numel() == 0:
        z = torch.zeros((), device=labels.device)
        return z, z
    counts = F.one_hot(labels.long(), codebook_size).sum(dim=0).float()  # (C, V)
    p = counts / counts.sum(dim=-1, keepdim=True)
    entropy = -torch.where(p > 0, p * torch.log(p.clamp(min=1e-30)), torch.zeros_like(p)).sum(-1)
    usage = (counts > 0).float().mean(dim=-1)
    return entropy.mean(), usage.mean()


class BestRQLoss(AbsSSLLoss):
    """BEST-RQ masked prediction with a frozen random-projection quantizer.

    Procedure for a batch of normalized features x (B, T, F):

    1. Targets.  x is stacked ``subsampling`` (s) frames at a time, one (F*s)-vector per encoder
       frame t (input frames ``[s*t, s*t+s)``).  No further normalization is applied: the model's
       ``normalize`` layer has already mean/variance-normalized the features (BEST-RQ normalizes
       with global statistics), and these are exactly what the encoder sees.  Each codebook c
       projects the vector with a frozen Xavier matrix, L2-normalizes the result and takes the
       nearest (Euclidean) of its frozen unit-norm codewords; for unit vectors that is the
       largest cosine.  (ESPnet's RPQ uses a non-affine LayerNorm + Euclidean argmin instead.)
       Projection and codebooks are *buffers*: saved in the state_dict, never returned by
       ``parameters()``, never trained; ``rpq_seed`` makes them identical across runs and ranks.
    2. Masking.  A span mask is drawn at the encoder frame rate, expanded to input frames, and
       masked input frames are replaced by N(0, noise_std²) noise.
    3. Prediction.  The masked input is encoded (``return_all_layers=False``); one head
       Linear(D, codebook_size) per codebook predicts the label of each masked encoder frame.
       The loss is the cross-entropy at masked frames only, averaged over codebooks and then
       over masked frames (``reduction="frame"``: every masked frame of the batch weighs the
       same, so long utterances weigh more) or per utterance first (``reduction="utterance"``:
       the batch loss is the mean of per-utterance means, so with per-row generators an
       utterance's contribution does not depend on its batch-mates).

    Randomness: with ``generators`` (one per row, training mode) row b's mask and noise are drawn
    from ``generators[b]`` only, and the noise only over its valid frames, so they do not depend
    on the batch composition; without them the global RNG is used; in eval mode one generator
    seeded with ``eval_seed`` makes validation deterministic.

    Options (constructor keyword args / YAML ``ssl_loss_conf``); paper values in brackets:
        input_size (int): feature dimension F (passed by the model).
        encoder_output_size (int): encoder output dimension D (passed by the model).
        subsampling (int, default 4): s, input frames per encoder frame; must equal the
            backbone's (checked at every call).  Sizes the projection input F*s.
        codebook_size (int, default 256) [8192]: entries per codebook; 256 suits CPU-sized
            models and corpora.
        codebook_dim (int, default 16) [16]: dimension of the projected space.
        num_codebooks (int, default 1) [1; multi-codebook variants use up to 16]: independent
            projection/codebook pairs, each with its own head; CE is averaged over them.
        mask_prob (float, default 0.3) [0.01]: span-start probability times span (see
            ``compute_span_mask``); with overlaps about 1-exp(-p) of the frames are masked.
        mask_span (int, default 4) [400 ms = 10 encoder frames at 40 ms]: span length in encoder
            frames.  The paper's 0.01 starts per frame with 400 ms spans (≈ 1-exp(-0.4) ≈ 33%
            masked) need long utterances; 0.3 × 4 frames masks a similar ~26% of a 1-2 s
            utterance.
        min_masks (int, default 1): at least this many spans per utterance when it is long enough.
        noise_std (float, default 0.1) [0.1]: std of the noise that replaces masked frames.
        rpq_seed (int, default 0): seed of the frozen projection and codebook.
        reduction (str, default "frame"): ``"frame"`` or ``"utterance"`` (see 3. above).
        eval_seed (int, default 0): seed for masks and noise in eval mode.
        quantizer (str, default "random_projection"): where the anchor labels come from.
            ``"random_projection"`` is BEST-RQ's frozen RPQ (step 1 above). ``"online_kmeans"``
            replaces projection and codebook by a k-means codebook of ``codebook_size`` entries
            over the same stacked frames, seeded from the first batch and refined by the first
            ``kmeans_update_steps`` training batches, then frozen (HuBERT's first-iteration
            targets, on the encoder's own features; see
            :mod:`espnet_bilevel.losses.online_kmeans`). ``codebook_dim`` is then unused; needs
            ``num_codebooks: 1``; ``rpq_seed`` seeds the k-means++ draws.
        kmeans_update_steps (int, default 100): training batches that shape the k-means codebook.

    Stats: ``acc`` (masked top-1 accuracy, averaged over codebooks), ``code_entropy`` (entropy in
    nats of the label histogram over all valid encoder frames of the batch, averaged over
    codebooks; log(codebook_size) = uniform usage), ``code_usage`` (fraction of codebook entries
    used in the batch), ``mask_frac`` (masked / valid encoder frames).
    """

    def __init__(
        self,
        input_size: int,
        encoder_output_size: int,
        subsampling: int = 4,
        codebook_size: int = 256,
        codebook_dim: int = 16,
        num_codebooks: int = 1,
        mask_prob: float = 0.3,
        mask_span: int = 4,
        min_masks: int = 1,
        noise_std: float = 0.1,
        rpq_seed: int = 0,
        reduction: str = "frame",
        eval_seed: int = 0,
        quantizer: str = "random_projection",
        kmeans_update_steps: int = 100,
    ):
        super().__init__()
        if subsampling < 1:
            raise ValueError("subsampling must be >= 1")
        if codebook_size < 2 or codebook_dim < 1 or num_codebooks < 1:
            raise ValueError("need codebook_size >= 2, codebook_dim >= 1 and num_codebooks >= 1")
        if noise_std < 0:
            raise ValueError("noise_std must be >= 0")
        if reduction not in ("frame", "utterance"):
            raise ValueError(f"reduction must be 'frame' or 'utterance', got {reduction!r}")
        if quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
        if quantizer == "online_kmeans" and num_codebooks != 1:
            raise ValueError("quantizer 'online_kmeans' has one codebook: set num_codebooks: 1")
        self.input_size = input_size
        self.encoder_output_size = encoder_output_size
        self.subsampling = subsampling
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.num_codebooks = num_codebooks
        self.mask_prob = mask_prob
        self.mask_span = mask_span
        self.min_masks = min_masks
        self.noise_std = noise_std
        self.rpq_seed = rpq_seed
        self.reduction = reduction
        self.eval_seed = eval_seed
        self.quantizer = quantizer

        if quantizer == "online_kmeans":
            self.kmeans = OnlineKMeansQuantizer(
                input_size * subsampling, codebook_size, kmeans_update_steps, seed=rpq_seed
            )
        else:
            projection, codebook = random_projection_quantizer(
                num_codebooks, input_size * subsampling, codebook_size, codebook_dim, rpq_seed
            )
            # Buffers, not parameters: the trainer's optimizers only see parameters(), and the
            # buffers travel with the checkpoint, so a resumed / averaged model keeps its targets.
            self.register_buffer("rpq_projection", projection)
            self.register_buffer("rpq_codebook", codebook)
        self.heads = torch.nn.ModuleList(
            [torch.nn.Linear(encoder_output_size, codebook_size) for _ in range(num_codebooks)]
        )

    # ------------------------------------------------------------------ targets
    @torch.no_grad()
    def anchor_labels(
        self, feats: torch.Tensor, t_out: int, valid: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(B, T, F) normalized features -> (B, t_out, C) long labels (no graph, θ-free).

        With the k-means quantizer the batch's ``valid`` (B, t_out) frames first shape the
        codebook (seeding / training-time refinement, see ``quantizer``); padding never does.
        """
        stacked = self.stack_frames(feats, t_out).float()
        if self.quantizer == "online_kmeans":
            # once frozen (nearly all of a run) the codebook needs no frames: skip gathering them
            if not self.kmeans.frozen:
                frames = stacked.flatten(0, 1) if valid is None else stacked[valid]
                self.kmeans.observe(frames, training=self.training)
            return self.kmeans.assign(stacked)[..., None]
        proj = torch.einsum("btf,cfd->btcd", stacked, self.rpq_projection.float())
        proj = F.normalize(proj, dim=-1)
        # unit vectors: ||p - c||^2 = 2 - 2 p·c, so the nearest codeword has the largest dot
        sim = torch.einsum("btcd,cvd->btcv", proj, self.rpq_codebook.float())
        return sim.argmax(dim=-1)

    def stack_frames(self, feats: torch.Tensor, t_out: int) -> torch.Tensor:
        """(B, T, F) -> (B, t_out, F*s); zero-pads the input if s*t_out > T."""
        s = self.subsampling
        bsz, t_in, fdim = feats.shape
        need = s * t_out
        if need > t_in:
            feats = torch.cat([feats, feats.new_zeros(bsz, need - t_in, fdim)], dim=1)
        return feats[:, :need].reshape(bsz, t_out, s * fdim)

    # ------------------------------------------------------------------ masking
    def _generators(self, generators):
        """(per-row generators or None, single generator or None) for this call."""
        if not self.training:
            return None, torch.Generator().manual_seed(self.eval_seed)
        return (list(generators) if generators is not None else None), None

    def draw_mask(
        self,
        feats_lengths: torch.Tensor,
        input_len: int,
        backbone: BackboneView,
        generator: Optional[torch.Generator] = None,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (mask_out (B, T'), mask_in (B, input_len), out_lens (B,))."""
        out_lens = backbone.output_lengths(feats_lengths).long()
        t_out = int(out_lens.max()) if out_lens.numel() else 0
        if generators is not None:
            rows = [
                compute_span_mask(out_lens[b : b + 1], t_out, self.mask_prob, self.mask_span,
                                  self.min_masks, generator=generators[b])
                for b in range(out_lens.numel())
            ]
            mask_out = torch.cat(rows, dim=0) if rows else torch.zeros(0, t_out, dtype=torch.bool)
        else:
            mask_out = compute_span_mask(
                out_lens, t_out, self.mask_prob, self.mask_span, self.min_masks, generator=generator
            )
        mask_out = mask_out.to(feats_lengths.device)
        mask_in = expand_mask(mask_out, self.subsampling, input_len)
        valid_in = torch.arange(input_len, device=mask_in.device)[None, :] < feats_lengths[:, None]
        return mask_out, mask_in & valid_in, out_lens

    def apply_noise(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        mask_in: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> torch.Tensor:
        """Replace masked input frames by N(0, noise_std²) noise."""
        bsz, t_in, fdim = feats.shape
        if generators is not None:
            # only the row's valid frames draw noise, so the draws do not depend on padding
            noise = torch.zeros(bsz, t_in, fdim)
            for b in range(bsz):
                length = int(feats_lengths[b])
                noise[b, :length] = torch.randn(length, fdim, generator=generators[b])
        else:
            noise = torch.randn(bsz, t_in, fdim, generator=generator)
        noise = (noise * self.noise_std).to(device=feats.device, dtype=feats.dtype)
        return torch.where(mask_in[:, :, None], noise, feats)

    # ------------------------------------------------------------------ pieces
    def check_backbone(self, backbone: BackboneView) -> None:
        if backbone.subsampling != self.subsampling:
            raise ValueError(
                f"{type(self).__name__} was built for subsampling={self.subsampling} but the "
                f"backbone subsamples by {backbone.subsampling}; set ssl_loss_conf.subsampling"
            )

    @staticmethod
    def check_lengths(enc: torch.Tensor, enc_lens: torch.Tensor, out_lens: torch.Tensor) -> None:
        # The mask was drawn from output_lengths before encoding; if those disagree with what the
        # encoder returns, masks and targets would be silently misaligned, so fail loudly.
        t_out = int(out_lens.max()) if out_lens.numel() else 0
        if enc.size(1) < t_out or not torch.equal(enc_lens.long().cpu(), out_lens.long().cpu()):
            raise RuntimeError(
                f"backbone.output_lengths {out_lens.tolist()} disagrees with the encoder's output "
                f"lengths {enc_lens.tolist()} (padded length {enc.size(1)})"
            )

    def reduce(self, per_frame: torch.Tensor, utt: torch.Tensor, bsz: int) -> torch.Tensor:
        """(N,) per-masked-frame losses -> scalar, following ``reduction``."""
        if self.reduction == "frame":
            return per_frame.mean()
        sums = per_frame.new_zeros(bsz).index_add(0, utt, per_frame)
        counts = per_frame.new_zeros(bsz).index_add(0, utt, torch.ones_like(per_frame))
        has = counts > 0
        return (sums[has] / counts[has]).mean()

    def zero_loss(self, feats: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        # Keeps every η parameter (and the encoder output) in the graph so backward / DDP see a
        # (zero) gradient when a batch has nothing masked.
        zero = sum((p.sum() * 0.0 for p in self.parameters()), feats.sum() * 0.0)
        return zero + sum((t.sum() * 0.0 for t in tensors), zero.new_zeros(()))

    def masked_prediction(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        backbone: BackboneView,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Dict[str, object]:
        """Mask, encode, and score G (CE vs the anchor labels).  Shared with BiRQ.

        Returns a dict with ``enc`` (B, T', D) masked-pass output, ``mask`` (B, T') masked valid
        encoder frames, ``valid`` (B, T') valid encoder frames, ``out_lens``, ``utt`` (N,) row of
        each masked frame, ``labels`` (B, T', C), ``loss`` (G, or None if nothing is masked),
        ``acc``, ``code_entropy``, ``code_usage``, ``mask_frac``, and ``row_gens`` / ``gen``
        (the random sources, so a subclass continues the same per-row streams).
        """
        self.check_backbone(backbone)
        row_gens, gen = self._generators(generators)
        bsz, t_in, _ = feats.shape
        mask_out, mask_in, out_lens = self.draw_mask(feats_lengths, t_in, backbone, gen, row_gens)
        t_out = mask_out.size(1)
        masked_feats = self.apply_noise(feats, feats_lengths, mask_in, gen, row_gens)
        enc, enc_lens, _ = backbone.encode(masked_feats, feats_lengths, False)
        self.check_lengths(enc, enc_lens, out_lens)
        enc = enc[:, :t_out]

        valid = torch.arange(t_out, device=feats.device)[None, :] < out_lens.to(feats.device)[:, None]
        labels = self.anchor_labels(feats, t_out, valid)  # (B, T', C)
        mask = mask_out.to(feats.device) & valid
        mask_frac = mask.sum().float() / valid.sum().clamp(min=1).float()
        entropy, usage = code_usage_stats(labels[valid], self.codebook_size)
        res = dict(
            enc=enc, mask=mask, valid=valid, out_lens=out_lens, labels=labels, loss=None,
            acc=feats.new_zeros(()), code_entropy=entropy, code_usage=usage,
            mask_frac=mask_frac, row_gens=row_gens, gen=gen,
            utt=torch.arange(bsz, device=feats.device)[:, None].expand(-1, t_out)[mask],
        )
        if not bool(mask.any()):
            return res

        h = enc[mask]  # (N, D), rows in (utterance, time) order
        target = labels[mask]  # (N, C)
        per_frame = h.new_zeros(h.size(0), dtype=torch.float32)
        correct = per_frame.new_zeros(())
        for c, head in enumerate(self.heads):
            logits = head(h).float()
            per_frame = per_frame + F.cross_entropy(logits, target[:, c], reduction="none")
            correct = correct + (logits.argmax(-1) == target[:, c]).float().mean()
        res["loss"] = self.reduce(per_frame / self.num_codebooks, res["utt"], bsz)
        res["acc"] = (correct / self.num_codebooks).detach()
        return res

    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        backbone: BackboneView,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        res = self.masked_prediction(feats, feats_lengths, backbone, generators)
        loss = res["loss"] if res["loss"] is not None else self.zero_loss(feats, res["enc"])
        stats = {k: res[k].detach() for k in ("acc", "code_entropy", "code_usage", "mask_frac")}
        return loss, stats


__all__: List[str] = ["BestRQLoss", "code_usage_stats", "random_projection_quantizer"]
