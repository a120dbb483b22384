"""The bilevel ASR model: ESPnet's ASR model plus an SSL head, with named parameter groups.

Parameter groups (algorithms.md §1.1, §8.2):

* θ (``theta``) — the shared backbone: frontend, normalize, preencoder, encoder, postencoder;
* φ (``phi``)   — the supervised head: ``ctc`` (its output layer ``ctc.ctc_lo``), plus
  ``decoder`` / ``joint_network`` for hybrid CTC/attention or transducer models;
* η (``eta``)   — the SSL head: everything inside ``ssl_loss``.

Calling the model with only ``speech, speech_lengths, text, text_lengths`` behaves exactly like
ESPnet's ``ESPnetASRModel`` (so ``collect_stats``, ``asr_inference`` and other stock tools work).
Passing ``sup_weight`` / ``ssl_weight`` (as the bilevel trainer does) computes

    loss = sup_weight · f(θ, φ; labeled batch) + ssl_weight · g(θ, η; unlabeled batch)

in ONE forward call, so a single backward gives every group its BL-JUST gradient and DDP
synchronises gradients once per step.  A level whose weight is 0 is not computed at all.

.. note:: φ never receives ∇g and η never receives ∇f: g is computed from the backbone and
   ``ssl_loss`` only, f from the backbone, ``ctc`` and ``decoder`` only.
"""
from typing import Dict, List, Optional, Tuple

import torch
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_bilevel.losses.abs_ssl_loss import AbsSSLLoss, BackboneView

SUPERVISED_HEAD_PREFIXES = ("ctc.", "decoder.", "joint_network.", "aux_ctc.")
SSL_HEAD_PREFIX = "ssl_loss."


class BilevelASRModel(ESPnetASRModel):
    """ESPnetASRModel + SSL head η.  ``ssl_loss=None`` gives a purely supervised model."""

    def __init__(
        self, ssl_loss: Optional[AbsSSLLoss] = None, input_size: Optional[int] = None, **asr_kwargs
    ):
        super().__init__(**asr_kwargs)
        self.ssl_loss = ssl_loss
        # feature dimension when there is no frontend (pre-extracted features, --input_size)
        self._input_size = input_size
        self._subsampling: Optional[int] = None

    # ------------------------------------------------------------------ parameter groups
    def parameter_group_of(self, name: str) -> str:
        if name.startswith(SSL_HEAD_PREFIX):
            return "eta"
        if name.startswith(SUPERVISED_HEAD_PREFIXES):
            return "phi"
        return "theta"

    def parameter_groups(self) -> Dict[str, List[Tuple[str, torch.nn.Parameter]]]:
        groups = {"theta": [], "phi": [], "eta": []}
        for name, p in self.named_parameters():
            groups[self.parameter_group_of(name)].append((name, p))
        return groups

    # ------------------------------------------------------------------ backbone for SSL
    def extract_normalized_feats(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend + normalization, no SpecAugment: SSL losses do their own masking."""
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        if self.normalize is not None:
            feats, feats_lengths = self.normalize(feats, feats_lengths)
        return feats, feats_lengths

    def _encode_feats(self, feats, feats_lengths, return_all_layers: bool = False):
        if self.preencoder is not None:
            feats, feats_lengths = self.preencoder(feats, feats_lengths)
        if return_all_layers:
            out, out_lens, _ = self.encoder(feats, feats_lengths, return_all_hs=True)
        else:
            out, out_lens, _ = self.encoder(feats, feats_lengths)
        layers = None
        if isinstance(out, tuple):
            out, layers = out
            # interctc entries are (layer_index, tensor); keep tensors only
            layers = [h[1] if isinstance(h, tuple) else h for h in layers]
        if self.postencoder is not None:
            out, out_lens = self.postencoder(out, out_lens)
        return out, out_lens, layers

    def encoder_output_lengths(self, feats_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder output lengths for a padded batch with these input lengths.

        ESPnet's conv subsampling slices the *padded* mask, so an utterance's output length
        depends on the batch's padded length too (e.g. conv2d gives ceil(L/2) after the first
        layer for L < T_max - 1, but (L-1)//2 when L = T_max).  Running the encoder's own input
        layer on the real pad mask (with a one-row dummy input, so it costs one tiny conv) is
        exact for every ESPnet input layer, unlike a formula per subsampling class.
        """
        embed = getattr(self.encoder, "embed", None)
        if embed is None:
            return feats_lengths.clone()
        t_max = int(feats_lengths.max())
        device = feats_lengths.device
        positions = torch.arange(t_max, device=device)
        mask = (positions[None, :] < feats_lengths[:, None])[:, None, :]  # (B, 1, T), True = valid
        x = torch.zeros(1, t_max, self._encoder_input_size(), device=device)
        # eval mode for the probe: the input layer's positional dropout must not draw from the
        # global RNG (that would make dropout masks depend on when the probe first ran)
        was_training = embed.training
        embed.eval()
        try:
            with torch.no_grad():
                _, out_mask = embed(x, mask)
        except TypeError:  # input layers without a mask argument keep the frame rate
            return feats_lengths.clone()
        finally:
            embed.train(was_training)
        if out_mask is None:
            return feats_lengths.clone()
        return out_mask.squeeze(1).sum(dim=-1).to(feats_lengths.dtype)

    def _encoder_input_size(self) -> int:
        if self.preencoder is not None:
            return self.preencoder.output_size()
        if self.frontend is not None:
            return self.frontend.output_size()
        return self._input_size

    def subsampling_factor(self) -> int:
        """Input frames per encoder frame (4 for conv2d), measured once on a long probe."""
        if self._subsampling is None:
            probe = torch.tensor([1000], device=next(self.parameters()).device)
            out = int(self.encoder_output_lengths(probe)[0])
            self._subsampling = max(1, round(1000 / max(out, 1)))
        return self._subsampling

    def backbone_view(self) -> BackboneView:
        return BackboneView(
            encode_fn=self._encode_feats,
            input_size=self._encoder_input_size(),
            output_size=self.encoder.output_size(),
            subsampling=self.subsampling_factor(),
            num_layers=len(getattr(self.encoder, "encoders", [])),
            lengths_fn=self.encoder_output_lengths,
        )

    # ------------------------------------------------------------------ losses
    def ssl_forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        row_seeds: Optional[List[int]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """g(θ, η) on a batch of raw (unlabeled) speech.

        ``row_seeds`` (one per utterance, from the trainer) seed per-row generators so each
        utterance's random choices (e.g. CPC split points) do not depend on its batch-mates.
        """
        if self.ssl_loss is None:
            raise RuntimeError(
                "this step needs the SSL loss g, but the model has no ssl_loss "
                "(set ssl_loss: cpc|w2v2|... in the config)"
            )
        speech = speech[:, : speech_lengths.max()]
        feats, feats_lengths = self.extract_normalized_feats(speech, speech_lengths)
        generators = None
        if row_seeds is not None and self.training:
            generators = [torch.Generator().manual_seed(int(s)) for s in row_seeds]
        loss, stats = self.ssl_loss(feats, feats_lengths, self.backbone_view(), generators)
        return loss, {f"ssl_{k}": v for k, v in stats.items()}

    def forward(
        self,
        speech: torch.Tensor = None,
        speech_lengths: torch.Tensor = None,
        text: torch.Tensor = None,
        text_lengths: torch.Tensor = None,
        speech_unlab: torch.Tensor = None,
        speech_unlab_lengths: torch.Tensor = None,
        sup_weight: float = None,
        ssl_weight: float = None,
        ssl_row_seeds: Optional[List[int]] = None,
        **kwargs,
    ):
        if sup_weight is None and ssl_weight is None:
            # Stock ESPnet behaviour: f only, returns (loss, stats, weight).
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)

        sup_weight = float(sup_weight or 0.0)
        ssl_weight = float(ssl_weight or 0.0)
        stats: Dict[str, Optional[torch.Tensor]] = {}
        loss = None
        batch_size = None

        if sup_weight > 0:
            if speech is None or text is None:
                raise RuntimeError("a supervised step needs speech and text (labeled batch)")
            loss_sup, sup_stats, weight = super().forward(
                speech, speech_lengths, text, text_lengths, **kwargs
            )
            sup_stats = dict(sup_stats)
            sup_stats["loss_sup"] = sup_stats.pop("loss")
            stats.update(sup_stats)
            loss = sup_weight * loss_sup
            batch_size = speech.shape[0]

        if ssl_weight > 0:
            if speech_unlab is None:
                raise RuntimeError("an SSL step needs speech_unlab (unlabeled batch)")
            loss_ssl, ssl_stats = self.ssl_forward(
                speech_unlab, speech_unlab_lengths, row_seeds=ssl_row_seeds
            )
            stats.update(ssl_stats)
            stats["loss_ssl"] = loss_ssl.detach()
            loss = ssl_weight * loss_ssl if loss is None else loss + ssl_weight * loss_ssl
            if batch_size is None:
                batch_size = speech_unlab.shape[0]

        if loss is None:
            raise RuntimeError("both sup_weight and ssl_weight are 0: nothing to optimize")
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    @torch.no_grad()
    def validation_forward(
        self, speech, speech_lengths, text, text_lengths, **kwargs
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """f on labeled data (ESPnet's stats: loss, loss_ctc, cer_ctc, wer, ...), plus g on the
        same audio as ``loss_ssl`` so the lower level can be monitored on held-out data."""
        loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        stats = dict(stats)
        if self.ssl_loss is not None:
            loss_ssl, ssl_stats = self.ssl_forward(speech, speech_lengths)
            stats.update(ssl_stats)
            stats["loss_ssl"] = loss_ssl.detach()
        return force_gatherable((loss, stats, speech.shape[0]), loss.device)

    def collect_feats(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor = None,
        text_lengths: torch.Tensor = None,
        **kwargs,
    ) -> Dict[str, torch.Tensor]:
        """Text is optional: statistics of an unlabeled set need audio only."""
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}
