"""The contract between the bilevel model and a lower-level (self-supervised) loss.

A lower-level loss *is* the SSL head η: it owns every parameter that only the unsupervised
objective g uses (predictors, projections, quantizer codebooks, mask embeddings).  It never owns
backbone parameters θ; it reaches the backbone through :class:`BackboneView`, so that the trainer
can split θ / φ / η by module name and the bilevel invariants hold by construction:

* the supervised head φ (``ctc``, ``decoder``) is never touched by g;
* η (the ``ssl_loss`` module of the model) is never touched by the supervised loss f.
"""
from abc import ABC, abstractmethod
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch


class BackboneView:
    """What a lower-level loss may do with the backbone θ.

    Attributes:
        input_size: feature dimension F of the (normalized) encoder input.
        output_size: encoder output dimension D.
        subsampling: how many input frames make one encoder frame (conv2d: 4, conv2d6: 6, ...).
        num_layers: number of encoder blocks (for losses that read intermediate layers).
    """

    def __init__(
        self,
        encode_fn: Callable[..., Tuple[torch.Tensor, torch.Tensor, Optional[List[torch.Tensor]]]],
        input_size: int,
        output_size: int,
        subsampling: int,
        num_layers: int,
        lengths_fn: Callable[[torch.Tensor], torch.Tensor],
    ):
        self._encode_fn = encode_fn
        self._lengths_fn = lengths_fn
        self.input_size = input_size
        self.output_size = output_size
        self.subsampling = subsampling
        self.num_layers = num_layers

    def encode(
        self, feats: torch.Tensor, feats_lengths: torch.Tensor, return_all_layers: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[List[torch.Tensor]]]:
        """Run preencoder + encoder (+ postencoder) on normalized features.

        Returns (out (B, T', D), out_lengths (B,), layer_outputs or None).  ``layer_outputs`` is a
        list with one (B, T', D) tensor per encoder block when ``return_all_layers`` is true.
        """
        return self._encode_fn(feats, feats_lengths, return_all_layers)

    def output_lengths(self, feats_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder output lengths for the given input lengths, without running the encoder.

        Equals the lengths that :meth:`encode` returns (the model derives it from the encoder's
        input layer), so masks can be drawn at the encoder frame rate before encoding.
        """
        return self._lengths_fn(feats_lengths)


class AbsSSLLoss(torch.nn.Module, ABC):
    """Lower-level loss g(θ, η).  Subclasses are registered in ``espnet_bilevel.losses``."""

    @abstractmethod
    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        backbone: BackboneView,
        generators: Optional[Sequence[torch.Generator]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Compute the loss on a padded batch of normalized features (B, T, F).

        ``generators`` (one CPU generator per row, seeded by the trainer from the utterance id
        and the step) make a row's random choices independent of which other utterances share
        its batch, so results do not depend on batch composition or the number of DDP ranks.
        Losses draw from them where they can; ``None`` means the global RNG.

        Returns (scalar loss averaged over the batch, stats).  Stats are detached scalars; they
        appear in the training log with the prefix of the loss (e.g. ``ssl_acc``).
        """
        raise NotImplementedError
