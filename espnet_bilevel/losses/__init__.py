"""Lower-level (self-supervised) losses g(θ, η) and their registry.

Adding a loss = one :class:`AbsSSLLoss` subclass + one entry in ``ssl_loss_choices``; the task
exposes it as ``--ssl_loss NAME --ssl_loss_conf {...}``.
"""
from espnet2.train.class_choices import ClassChoices

from espnet_bilevel.losses.abs_ssl_loss import AbsSSLLoss, BackboneView
from espnet_bilevel.losses.bestrq import BestRQLoss
from espnet_bilevel.losses.birq import BiRQLoss
from espnet_bilevel.losses.cpc import CPCLoss
from espnet_bilevel.losses.wav2vec2 import Wav2Vec2Loss

ssl_loss_choices = ClassChoices(
    "ssl_loss",
    classes=dict(cpc=CPCLoss, w2v2=Wav2Vec2Loss, bestrq=BestRQLoss, birq=BiRQLoss),
    type_check=AbsSSLLoss,
    default="cpc",
    optional=True,  # ssl_loss: null for purely supervised models
)

__all__ = [
    "AbsSSLLoss", "BackboneView", "BestRQLoss", "BiRQLoss", "CPCLoss", "Wav2Vec2Loss",
    "ssl_loss_choices",
]
