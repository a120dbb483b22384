"""espnet-bilevel: bilevel joint unsupervised and supervised training for ESPnet."""

__version__ = "0.1.0"
