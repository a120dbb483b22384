"""HuBERT iteration-1 targets (espnet_bilevel.ssl_targets.mfcc_kmeans): frame counts that match what
hubert_train expects, 39-dim features, determinism, k-means that separates two tone classes, and
one clear error per bad input with nothing half-written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from espnet_bilevel.data.kaldi_dir import DataError
from espnet_bilevel.ssl_targets import mfcc_kmeans as mk

FS = 16000
# the conv extractor of conf/tiny/hubert_pretrain.yaml (HuBERT's layout: receptive field 400, stride 320)
TINY_EXTRACTOR = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2


def tone(seconds: float, freq: float, seed: int = 0) -> np.ndarray:
    n = int(round(seconds * FS))
    t = np.arange(n) / FS
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.003 * rng.standard_normal(n)).astype(np.float32)


def write_scp(tmp_path, name, items):
    """items: {utt: samples}; writes <tmp>/<name>/wav.scp and the wavs; returns the scp path."""
    d = tmp_path / name
    (d / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for utt in sorted(items):
        p = d / "wav" / f"{utt}.wav"
        sf.write(str(p), items[utt], FS, subtype="PCM_16")
        lines.append(f"{utt} {p}")
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    return d / "wav.scp"


@pytest.fixture
def two_tones(tmp_path):
    """6 low-tone (300 Hz) and 6 high-tone (2.5 kHz) utterances of different lengths."""
    items = {}
    for i in range(6):
        items[f"low-{i}"] = tone(0.4 + 0.1 * i, 300.0, seed=i)
        items[f"high-{i}"] = tone(0.35 + 0.1 * i, 2500.0, seed=100 + i)
    return write_scp(tmp_path, "tones", items)


# ------------------------------------------------------------------------------------- frames / features

@pytest.mark.parametrize("n", [400, 401, 559, 560, 561, 16000, 16123, 24321])
def test_frame_count_is_kaldi_snip_edges_and_matches_features(n):
    assert mk.num_label_frames(n) == 1 + (n - 400) // 160
    feats = mk.mfcc_features(tone(n / FS, 440.0))
    assert feats.shape == (1 + (n - 400) // 160, 39) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_shorter_than_one_window_has_no_frames():
    assert mk.num_label_frames(399) == 0
    assert mk.mfcc_features(np.zeros(399, np.float32)).shape == (0, 39)


@pytest.mark.parametrize("n", [400, 719, 720, 1039, 16000, 16123, 24321, 40000])
def test_every_second_label_matches_the_hubert_conv_extractor(n):
    """label_downsampling 2 of our 10 ms labels gives exactly one label per 20 ms conv frame,
    which torchaudio's HuBERT requires ("The length of label must match that of HuBERT model output")."""
    import torch
    from torchaudio.models.wav2vec2.components import _get_feature_extractor

    extractor = _get_feature_extractor("group_norm", TINY_EXTRACTOR, bias=False)
    with torch.no_grad():
        x, lengths = extractor(torch.zeros(1, n), torch.tensor([n]))
    labels = np.zeros(mk.num_label_frames(n), dtype=np.int64)
    assert len(labels[::2]) == x.shape[1] == int(lengths[0])


def test_labels_survive_espnets_hubert_collate_crop():
    """ESPnet's HuBERTCollateFn (as HubertTask builds it for the tiny config) crops audio and labels
    of a batch to the shortest utterance; the cropped labels still match the extractor's frames."""
    import torch
    from espnet2.train.collate_fn import HuBERTCollateFn
    from torchaudio.models.wav2vec2.components import _get_feature_extractor

    collate = HuBERTCollateFn(float_pad_value=0.0, int_pad_value=-1, label_downsampling=2, pad=False,
                              rand_crop=True, crop_audio=True, window_size=400 / 16, window_shift=320 / 16,
                              sample_rate=16.0)
    extractor = _get_feature_extractor("group_norm", TINY_EXTRACTOR, bias=False)
    torch.manual_seed(0)
    for lengths in ([16000, 23456], [8001, 8000, 30000], [5000, 5000]):
        batch = [(f"u{i}", {"speech": np.zeros(n, np.float32),
                            "text": np.arange(mk.num_label_frames(n), dtype=np.int64)})
                 for i, n in enumerate(lengths)]
        for _ in range(5):  # random crop offsets
            _, out = collate(batch)
            with torch.no_grad():
                x, _ = extractor(out["speech"], out["speech_lengths"])
            assert out["text"].shape[1] == x.shape[1], lengths
            assert (out["text_lengths"] == x.shape[1]).all()


# ------------------------------------------------------------------------------------- k-means

def test_kmeans_fit_is_deterministic_and_separates_blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-5, 0.5, (200, 3)), rng.normal(5, 0.5, (300, 3))]).astype(np.float32)
    c1, hist1 = mk.kmeans_fit(x, 2, seed=3)
    c2, hist2 = mk.kmeans_fit(x, 2, seed=3)
    assert np.array_equal(c1, c2) and hist1 == hist2
    labels, inertia = mk.kmeans_assign(x, c1)
    assert len(set(labels[:200])) == 1 and len(set(labels[200:])) == 1 and labels[0] != labels[-1]
    assert inertia == pytest.approx(hist1[-1], rel=0.05)
    assert all(a >= b - 1e-3 for a, b in zip(hist1, hist1[1:]))  # Lloyd never increases the inertia


def test_kmeans_reseeds_empty_clusters_and_uses_all_of_them():
    # 3 distinct points repeated: k-means++ may draw duplicates, but every cluster ends up non-empty
    x = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32), 50, axis=0)
    centroids, _ = mk.kmeans_fit(x, 3, seed=0)
    labels, inertia = mk.kmeans_assign(x, centroids)
    assert sorted(set(labels.tolist())) == [0, 1, 2] and inertia == pytest.approx(0.0, abs=1e-3)


def test_kmeans_needs_at_least_k_frames():
    with pytest.raises(DataError, match="only 5 frames to fit 8 clusters"):
        mk.kmeans_fit(np.zeros((5, 39), np.float32), 8)


# ------------------------------------------------------------------------------------- make_labels

def read_text(path):
    return {line.split()[0]: [int(t) for t in line.split()[1:]] for line in path.read_text().splitlines()}


def test_two_tone_classes_get_separate_clusters(two_tones, tmp_path):
    out = tmp_path / "labels"
    summary = mk.make_labels([mk.LabelSet("train", two_tones)], out, n_clusters=2, fit_portion=1.0)
    labels = read_text(out / "train" / "text")
    low = {c for u, ids in labels.items() if u.startswith("low") for c in ids}
    high = {c for u, ids in labels.items() if u.startswith("high") for c in ids}
    assert len(low) == 1 and len(high) == 1 and low != high, (low, high)
    assert summary["clusters_used"] == 2 and summary["fit"]["utterances"] == 12


def test_outputs_formats_and_frame_counts(two_tones, tmp_path):
    out = tmp_path / "labels"
    dev = write_scp(tmp_path, "dev", {"d-1": tone(0.77, 300.0), "d-2": tone(0.5, 2500.0)})
    mk.make_labels([mk.LabelSet("train", two_tones), mk.LabelSet("valid", dev)], out, n_clusters=4,
                   fit_portion=1.0)
    assert sorted(p.name for p in out.iterdir()) == ["km_model.npz", "kmeans.json", "tokens.txt", "train", "valid"]
    assert (out / "tokens.txt").read_text().split("\n")[:-1] == ["0", "1", "2", "3", "<unk>", "<sos/eos>"]
    for scp, name in ((two_tones, "train"), (dev, "valid")):
        labels = read_text(out / name / "text")
        rows = [line.split() for line in scp.read_text().splitlines()]
        assert list(labels) == [u for u, _ in rows]  # wav.scp order (Kaldi-sorted)
        for utt, path in rows:
            assert len(labels[utt]) == mk.num_label_frames(sf.info(path).frames)
            assert all(0 <= c < 4 for c in labels[utt])
    info = json.loads((out / "kmeans.json").read_text())
    assert info["n_clusters"] == 4 and info["dim"] == 39 and info["sets"]["valid"]["utterances"] == 2
    assert np.load(out / "km_model.npz")["centroids"].shape == (4, 39)
    assert not (tmp_path / "labels.tmp").exists()


def test_same_seed_same_labels_and_reusable_model(two_tones, tmp_path):
    kw = dict(n_clusters=3, fit_portion=0.5, max_fit_frames=300, seed=7)
    mk.make_labels([mk.LabelSet("train", two_tones)], tmp_path / "a", **kw)
    mk.make_labels([mk.LabelSet("train", two_tones)], tmp_path / "b", **kw)
    for f in ("train/text", "tokens.txt"):
        assert (tmp_path / "a" / f).read_text() == (tmp_path / "b" / f).read_text()
    assert np.array_equal(np.load(tmp_path / "a" / "km_model.npz")["centroids"],
                          np.load(tmp_path / "b" / "km_model.npz")["centroids"])
    info = json.loads((tmp_path / "a" / "kmeans.json").read_text())
    assert info["fit"]["utterances"] == 6 and info["fit"]["frames"] < 400  # subset + frame subsampling
    # labelling with the saved model (no fitting) reproduces the labels
    mk.make_labels([mk.LabelSet("train", two_tones)], tmp_path / "c", n_clusters=3,
                   km_model=tmp_path / "a" / "km_model.npz")
    assert (tmp_path / "c" / "train" / "text").read_text() == (tmp_path / "a" / "train" / "text").read_text()


# ------------------------------------------------------------------------------------- bad input

def _bad_audio(tmp_path, kind):
    wav = tmp_path / "bad.wav"
    if kind == "garbage":
        wav.write_bytes(b"RIFF....not a wav file at all")
    elif kind == "rate":
        sf.write(str(wav), tone(0.5, 440.0), 8000, subtype="PCM_16")
    elif kind == "stereo":
        sf.write(str(wav), np.stack([tone(0.5, 440.0)] * 2, axis=1), FS, subtype="PCM_16")
    elif kind == "short":
        sf.write(str(wav), tone(0.02, 440.0), FS, subtype="PCM_16")
    return wav


@pytest.mark.parametrize("kind, message", [
    ("missing", "audio file not found"),
    ("garbage", "cannot read audio file"),
    ("rate", "has sample rate 8000 Hz, expected 16000 Hz"),
    ("stereo", "has 2 channels; expected mono"),
    ("short", "shorter than one 25 ms window"),
])
def test_bad_audio_is_one_error_naming_line_and_file(kind, message, two_tones, tmp_path):
    wav = tmp_path / "missing.wav" if kind == "missing" else _bad_audio(tmp_path, kind)
    scp = tmp_path / "dev" / "wav.scp"
    scp.parent.mkdir()
    scp.write_text(f"a-good {two_tones.parent / 'wav' / 'low-0.wav'}\nb-bad {wav}\n")
    out = tmp_path / "labels"
    out.mkdir()
    (out / "old").write_text("previous complete result")
    with pytest.raises(DataError) as e:
        mk.make_labels([mk.LabelSet("train", two_tones), mk.LabelSet("valid", scp)], out, n_clusters=2,
                       fit_portion=1.0)
    msg = str(e.value)
    assert message in msg and f"{scp}:2 (utterance b-bad)" in msg and "\n" not in msg
    assert sorted(p.name for p in out.iterdir()) == ["old"]  # the old result is untouched


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("", "no utterances"),
    ("u1 /x.wav\nu1 /y.wav\n", "duplicated id 'u1'"),
    ("u1 sox in.wav -t wav - |\n", "pipes are not supported"),
])
def test_bad_wav_scp(content, message, tmp_path):
    scp = tmp_path / "wav.scp"
    if content is not None:
        scp.write_text(content)
    with pytest.raises(DataError, match=message):
        mk.make_labels([mk.LabelSet("train", scp)], tmp_path / "labels", n_clusters=2)
    assert not (tmp_path / "labels").exists()


def test_bad_arguments(two_tones, tmp_path):
    out = tmp_path / "labels"
    with pytest.raises(DataError, match="given twice: train"):
        mk.make_labels([mk.LabelSet("train", two_tones)] * 2, out)
    with pytest.raises(DataError, match="fit_on 'dev' is not one of the input sets"):
        mk.make_labels([mk.LabelSet("train", two_tones)], out, fit_on="dev")
    with pytest.raises(DataError, match="frames to fit 100000 clusters"):
        mk.make_labels([mk.LabelSet("train", two_tones)], out, n_clusters=100000, fit_portion=1.0)
    np.savez(tmp_path / "km.npz", centroids=np.zeros((5, 39), np.float32))
    with pytest.raises(DataError, match="has 5 clusters, but n_clusters is 3"):
        mk.make_labels([mk.LabelSet("train", two_tones)], out, n_clusters=3, km_model=tmp_path / "km.npz")
    assert not out.exists()
