"""Targets for self-supervised pre-training that are computed before training.

``mfcc_kmeans``: HuBERT's first-iteration targets (k-means cluster ids of 39-dim MFCC frames), in
the ``text`` format ``espnet2.bin.hubert_train`` reads. Imports torch/torchaudio only inside the
functions that compute features, so importing this package is cheap.
"""
