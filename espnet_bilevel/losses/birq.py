"""BiRQ: bilevel self-labeling random quantization (penalty form, one model, one loss).

BiRQ keeps BEST-RQ's θ-free anchor labels as the lower-level constraint G and adds an upper-level
objective F against *enhanced* labels produced by the model itself: the normalized output of the
first k encoder layers on the unmasked input, passed through a second frozen random projection
and a Gumbel-softmax over a second frozen codebook.  The enhanced targets keep their graph, so F
trains the first k layers both as predictor and as labeller; the anchor term (large weight)
keeps that self-labelling from collapsing.  Both objectives share θ, so ``min G`` is a constant
and the penalty form ``w1·F + w2·G`` needs no lower-level solve.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet_bilevel.losses.abs_ssl_loss import BackboneView
from espnet_bilevel.losses.bestrq import BestRQLoss, code_usage_stats, random_projection_quantizer


class BiRQLoss(BestRQLoss):
    """BiRQ loss ``enhanced_weight · F + anchor_weight · G`` (paper Eq. 9).

    G is exactly :class:`BestRQLoss` (this class inherits its masking, anchor labels, heads and
    reduction).  F, per batch:

    1. The *unmasked* features go through the backbone with ``return_all_layers=True`` (the
       masked pass uses ``return_all_layers=False``); z = output of layer k (1-based), normalized
       without trainable parameters (nothing trainable in the labeller but θ), by default per
       utterance and channel over its valid frames (``enhanced_norm: instance``, as data2vec
       normalizes its self-made targets) — see ``enhanced_norm`` for why not per frame.
    2. p = z · A with a frozen Xavier projection A (D × enhanced_codebook_dim, a buffer).
       Logits over the frozen unit-norm codebook {c_v} (a buffer) are ``-||p - c_v||²``.  Since
       ||p|| is the same for every v, the argmax equals the largest cosine, i.e. BEST-RQ's rule
       applied to layer-k features; the unnormalized ||p|| sets how peaked the softmax is.
    3. Soft targets y = softmax((logits + g) / gumbel_tau) with Gumbel noise g (``gumbel_hard``:
       straight-through one-hot of y instead).  In eval mode g = 0 (deterministic validation).
       **y is not detached**: F's gradient reaches layers 1..k through the targets as well as
       through the predictions — that is BiRQ's point.
    4. A second head η_F = Linear(D, enhanced_codebook_size) on the masked pass's output
       predicts y at masked frames; F = soft cross-entropy ``-Σ_v y_v log softmax(η_F(h))_v``,
       reduced like G (``reduction``).

    The unmasked pass runs with the backbone in whatever mode it is in (dropout active in
    training; BatchNorm running stats of a Conformer conv module are updated by both passes);
    the loss cannot switch the backbone's mode through the view.

    Options: every :class:`BestRQLoss` option (input_size, encoder_output_size, subsampling=4,
    codebook_size=256, codebook_dim=16, num_codebooks=1, mask_prob=0.3, mask_span=4,
    min_masks=1, noise_std=0.1, rpq_seed=0, reduction="frame", eval_seed=0,
    quantizer="random_projection", kmeans_update_steps=100), which configure the shared masking
    and the anchor branch G (``quantizer: online_kmeans`` gives G k-means targets), plus (paper values in brackets; `[NF]` = not given):
        enhanced_layer (int or None, default None) [7 of 10]: k, 1-based; None means
            ``max(1, round(0.7 * backbone.num_layers))``, resolved at every call.
        enhanced_codebook_size (int, default 256) [NF]: entries of the enhanced codebook.
        enhanced_codebook_dim (int, default 16) [NF]: dimension of the enhanced projection.
        enhanced_rpq_seed (int, default 1): seed of the enhanced projection/codebook (differs
            from ``rpq_seed`` so the two quantizers are independent).
        gumbel_tau (float, default 0.5) [0.5]: Gumbel-softmax temperature, fixed.
        gumbel_hard (bool, default False) [NF]: False = soft relaxed targets; True = one-hot
            targets with the straight-through gradient of the soft ones.
        enhanced_norm ("instance" or "layer", default "instance") [NF: the paper says
            "normalized"]: "instance" standardizes each channel over an utterance's valid frames;
            "layer" is a per-frame LayerNorm over channels. Because the targets keep their
            gradient, F can be lowered by making the layer-k output of every frame point the same
            way (then every frame gets the same code and is trivially predicted). A per-frame
            LayerNorm keeps that common direction, and on the mini corpus the enhanced labels
            collapsed to 2 of 256 codes within the first epoch even with w2 = 2.4; instance
            normalization subtracts it, so the codes must keep varying along the utterance.
        enhanced_weight (float, default 0.1) [0.1]: w1, weight of F.
        anchor_weight (float, default 2.4) [2.4]: w2, weight of G (penalty constant w2/w1 = 24).

    Stats: ``loss_enhanced`` (F), ``loss_anchor`` (G), ``acc_enhanced`` (masked top-1 of η_F vs
    the noise-free argmax of the enhanced logits), ``acc_anchor``, ``anchor_code_entropy`` and
    ``enhanced_code_entropy`` (entropy in nats of the batch's label histograms over valid
    frames; the enhanced one uses the noise-free argmax and exposes collapse, e.g. with
    anchor_weight = 0), ``anchor_code_usage``, ``enhanced_code_usage``, ``mask_frac``,
    ``gumbel_tau``.
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
        enhanced_layer: Optional[int] = None,
        enhanced_codebook_size: int = 256,
        enhanced_codebook_dim: int = 16,
        enhanced_rpq_seed: int = 1,
        gumbel_tau: float = 0.5,
        gumbel_hard: bool = False,
        enhanced_weight: float = 0.1,
        anchor_weight: float = 2.4,
        enhanced_norm: str = "instance",
        quantizer: str = "random_projection",
        kmeans_update_steps: int = 100,
    ):
        super().__init__(
            input_size=input_size, encoder_output_size=encoder_output_size,
            subsampling=subsampling, codebook_size=codebook_size, codebook_dim=codebook_dim,
            num_codebooks=num_codebooks, mask_prob=mask_prob, mask_span=mask_span,
            min_masks=min_masks, noise_std=noise_std, rpq_seed=rpq_seed, reduction=reduction,
            eval_seed=eval_seed, quantizer=quantizer, kmeans_update_steps=kmeans_update_steps,
        )
        if enhanced_layer is not None and enhanced_layer < 1:
            raise ValueError("enhanced_layer is 1-based and must be >= 1 (or null for 70% depth)")
        if enhanced_codebook_size < 2 or enhanced_codebook_dim < 1:
            raise ValueError("need enhanced_codebook_size >= 2 and enhanced_codebook_dim >= 1")
        if gumbel_tau <= 0:
            raise ValueError("gumbel_tau must be > 0")
        if enhanced_weight < 0 or anchor_weight < 0:
            raise ValueError("enhanced_weight and anchor_weight must be >= 0")
        if enhanced_norm not in ("instance", "layer"):
            raise ValueError(f"enhanced_norm must be 'instance' or 'layer', got {enhanced_norm!r}")
        self.enhanced_norm = enhanced_norm
        self.enhanced_layer = enhanced_layer
        self.enhanced_codebook_size = enhanced_codebook_size
        self.enhanced_codebook_dim = enhanced_codebook_dim
        self.enhanced_rpq_seed = enhanced_rpq_seed
        self.gumbel_tau = gumbel_tau
        self.gumbel_hard = gumbel_hard
        self.enhanced_weight = enhanced_weight
        self.anchor_weight = anchor_weight
        projection, codebook = random_projection_quantizer(
            1, encoder_output_size, enhanced_codebook_size, enhanced_codebook_dim, enhanced_rpq_seed
        )
        self.register_buffer("enhanced_projection", projection[0])  # (D, d)
        self.register_buffer("enhanced_codebook", codebook[0])  # (V, d), unit rows
        self.head_enhanced = torch.nn.Linear(encoder_output_size, enhanced_codebook_size)

    # ------------------------------------------------------------------ enhanced targets
    def target_layer(self, backbone: BackboneView) -> int:
        k = self.enhanced_layer
        if k is None:
            k = max(1, int(round(0.7 * backbone.num_layers)))
        if k > backbone.num_layers:
            raise ValueError(f"enhanced_layer={k} but the backbone has {backbone.num_layers} layers")
        return k

    def normalize_layer_output(self, layer_out: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``enhanced_norm`` of a (B, T', D) layer output; ``lengths`` = valid frames per row (all if None).
        Padded frames come out as 0 (they are never scored)."""
        z = layer_out.float()
        if self.enhanced_norm == "layer":
            return F.layer_norm(z, (z.size(-1),))
        if lengths is None:
            lengths = torch.full((z.size(0),), z.size(1), dtype=torch.long, device=z.device)
        m = (torch.arange(z.size(1), device=z.device)[None, :] < lengths.to(z.device)[:, None])
        m = m.unsqueeze(-1).to(z.dtype)  # (B, T', 1)
        n = m.sum(1, keepdim=True).clamp(min=1.0)
        mean = (z * m).sum(1, keepdim=True) / n
        var = (((z - mean) * m) ** 2).sum(1, keepdim=True) / n
        return (z - mean) / torch.sqrt(var + 1e-5) * m

    def enhanced_logits(self, layer_out: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, T', D) layer-k output -> (B, T', V) logits ``-||A·norm(z) - c_v||²`` (keeps grad)."""
        z = self.normalize_layer_output(layer_out, lengths)
        p = z @ self.enhanced_projection.float()
        c = self.enhanced_codebook.float()
        sq_dist = (p * p).sum(-1, keepdim=True) - 2.0 * p @ c.t() + (c * c).sum(-1)
        return -sq_dist

    def gumbel_noise(
        self,
        shape: Tuple[int, int, int],
        out_lens: torch.Tensor,
        generator: Optional[torch.Generator],
        generators: Optional[Sequence[torch.Generator]],
    ) -> torch.Tensor:
        """Standard Gumbel noise (B, T', V); with per-row generators row b draws only its
        ``out_lens[b]`` valid frames from ``generators[b]``."""
        bsz, t_out, v = shape
        if generators is not None:
            u = torch.full(shape, 0.5)
            for b in range(bsz):
                n = int(out_lens[b])
                u[b, :n] = torch.rand(n, v, generator=generators[b])
        else:
            u = torch.rand(shape, generator=generator)
        tiny = torch.finfo(torch.float32).tiny
        return -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - 1e-7)))

    def soft_targets(
        self,
        logits: torch.Tensor,
        noise: Optional[torch.Tensor],
        tau: Optional[float] = None,
    ) -> torch.Tensor:
        """Gumbel-softmax targets (noise None = noise-free, as in eval)."""
        tau = self.gumbel_tau if tau is None else tau
        noisy = logits if noise is None else logits + noise.to(logits.device)
        y = torch.softmax(noisy / tau, dim=-1)
        if self.gumbel_hard:
            hard = F.one_hot(y.argmax(-1), y.size(-1)).to(y.dtype)
            y = hard - y.detach() + y
        return y

    # ------------------------------------------------------------------ loss
    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        backbone: BackboneView,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        k = self.target_layer(backbone)
        res = self.masked_prediction(feats, feats_lengths, backbone, generators)
        enc, mask, valid, out_lens = res["enc"], res["mask"], res["valid"], res["out_lens"]
        t_out = mask.size(1)

        # Unmasked pass for the enhanced labels (keeps the graph into layers 1..k).
        _, lens_u, layers = backbone.encode(feats, feats_lengths, True)
        if layers is None or len(layers) != backbone.num_layers:
            raise RuntimeError(
                f"BiRQ needs one output per encoder layer ({backbone.num_layers}) from "
                f"encode(return_all_layers=True), got {None if layers is None else len(layers)} "
                "(intermediate-CTC layers are not supported)"
            )
        self.check_lengths(layers[k - 1], lens_u, out_lens)
        logits = self.enhanced_logits(layers[k - 1][:, :t_out], out_lens)  # (B, T', V)
        noise = None
        if self.training:
            noise = self.gumbel_noise(tuple(logits.shape), out_lens, res["gen"], res["row_gens"])
        targets = self.soft_targets(logits, noise)
        hard_enh = logits.detach().argmax(-1)
        enh_entropy, enh_usage = code_usage_stats(hard_enh[valid], self.enhanced_codebook_size)

        z = feats.new_zeros(())
        if res["loss"] is None:  # nothing masked in the whole batch
            loss = self.zero_loss(feats, enc, logits)
            loss_f, loss_g, acc_f = z, z, z
        else:
            log_p = torch.log_softmax(self.head_enhanced(enc[mask]).float(), dim=-1)
            per_frame = -(targets[mask] * log_p).sum(-1)
            loss_f = self.reduce(per_frame, res["utt"], feats.size(0))
            loss_g = res["loss"]
            acc_f = (log_p.argmax(-1) == hard_enh[mask]).float().mean()
            loss = self.enhanced_weight * loss_f + self.anchor_weight * loss_g

        stats = {
            "loss_enhanced": loss_f.detach(),
            "loss_anchor": loss_g.detach(),
            "acc_enhanced": acc_f.detach(),
            "acc_anchor": res["acc"].detach(),
            "anchor_code_entropy": res["code_entropy"].detach(),
            "enhanced_code_entropy": enh_entropy.detach(),
            "anchor_code_usage": res["code_usage"].detach(),
            "enhanced_code_usage": enh_usage.detach(),
            "mask_frac": res["mask_frac"].detach(),
            "gumbel_tau": feats.new_tensor(self.gumbel_tau),
        }
        return loss, stats

