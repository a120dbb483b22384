"""Tiny synthetic corpora and configs for tests and smoke runs (no espeak, no downloads).

Audio is a deterministic mixture of tones whose pitch follows the characters of the transcript,
so a model can (barely) learn something, but the point is shapes, plumbing and invariants.

>>> d = make_dummy_corpus(tmp_path, n_labeled=6, n_unlabeled=8, n_dev=3)   # doctest: +SKIP
"""
import random
from pathlib import Path
from typing import Dict

import numpy as np
import soundfile as sf

ALPHABET = "ABCDEFGH"
FS = 16000


def _tone_audio(text: str, rng: np.random.RandomState, char_sec: float = 0.12) -> np.ndarray:
    pieces = []
    for ch in text:
        n = int(char_sec * FS)
        t = np.arange(n) / FS
        if ch == " ":
            pieces.append(0.01 * rng.randn(n))
            continue
        f0 = 200 + 60 * (ord(ch) - ord("A"))
        pieces.append(0.3 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(2 * np.pi * 2.5 * f0 * t))
    x = np.concatenate(pieces + [0.01 * rng.randn(int(0.1 * FS))])
    return (x + 0.01 * rng.randn(len(x))).astype(np.float32)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), dtype=x.dtype)])


def _write_split(root: Path, name: str, n: int, rng_py: random.Random, rng_np, with_text=True,
                 fixed_seconds=None):
    d = root / "data" / name
    wav_dir = root / "wav" / name
    d.mkdir(parents=True, exist_ok=True)
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        words = [
            "".join(rng_py.choice(ALPHABET) for _ in range(rng_py.randint(2, 4)))
            for _ in range(rng_py.randint(2, 4))
        ]
        text = " ".join(words)
        spk = f"spk{i % 2}"
        uid = f"{spk}-{name}-{i:04d}"
        path = wav_dir / f"{uid}.wav"
        audio = _tone_audio(text, rng_np)
        if fixed_seconds is not None:
            audio = _fit_length(audio, int(fixed_seconds * FS))
        sf.write(path, audio, FS, subtype="PCM_16")
        rows.append((uid, spk, str(path), text))
    rows.sort()
    with open(d / "wav.scp", "w") as f:
        f.writelines(f"{u} {p}\n" for u, _, p, _ in rows)
    with open(d / "utt2spk", "w") as f:
        f.writelines(f"{u} {s}\n" for u, s, _, _ in rows)
    if with_text:
        with open(d / "text", "w") as f:
            f.writelines(f"{u} {t}\n" for u, _, _, t in rows)
    return d


def make_dummy_corpus(
    root, n_labeled: int = 8, n_unlabeled: int = 12, n_dev: int = 4, seed: int = 0,
    fixed_seconds: float = None,
) -> Dict[str, Path]:
    """Write data/{train,train_unlab,dev}/ Kaldi dirs and a char token list under ``root``.

    ``fixed_seconds`` makes every utterance exactly that long (padding/trimming), e.g. for the
    DDP test: ESPnet's conv subsampling makes an utterance's encoder length depend on the padded
    length of its batch, so only equal lengths make a 2-rank batch split exactly comparable.
    """
    root = Path(root)
    rng_py, rng_np = random.Random(seed), np.random.RandomState(seed)
    fs = fixed_seconds
    dirs = {
        "train": _write_split(root, "train", n_labeled, rng_py, rng_np, fixed_seconds=fs),
        "train_unlab": _write_split(root, "train_unlab", n_unlabeled, rng_py, rng_np, False,
                                    fixed_seconds=fs),
        "dev": _write_split(root, "dev", n_dev, rng_py, rng_np, fixed_seconds=fs),
    }
    tokens = ["<blank>", "<unk>", "<space>"] + list(ALPHABET) + ["<sos/eos>"]
    token_list = root / "data" / "tokens.txt"
    token_list.write_text("\n".join(tokens) + "\n")
    dirs["token_list"] = token_list
    return dirs


TINY_CONFIG = {
    "batch_type": "folded",
    "batch_size": 4,
    "max_epoch": 2,
    "num_workers": 0,
    "log_interval": 1,
    "use_tensorboard": False,
    "use_matplotlib": False,
    "num_att_plot": 0,
    "seed": 0,
    "best_model_criterion": [["valid", "cer_ctc", "min"], ["valid", "loss", "min"]],
    "keep_nbest_models": 2,
    "frontend": "default",
    "frontend_conf": {"n_fft": 512, "hop_length": 160, "n_mels": 20},
    "encoder": "conformer",
    "encoder_conf": {
        "output_size": 16,
        "attention_heads": 2,
        "linear_units": 32,
        "num_blocks": 2,
        "input_layer": "conv2d",
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
        "attention_dropout_rate": 0.0,
        "cnn_module_kernel": 5,
    },
    "model_conf": {"ctc_weight": 1.0},
    "ssl_loss": "cpc",
    "ssl_loss_conf": {"context_frames": 24, "future_frames": 16, "prediction_steps": 2},
    "solver": "bljust",
    "solver_conf": {"finetune_epochs": 1},
    "optim": "adam",
    "optim_conf": {"lr": 0.002},
    "optim2": "adam",
    "optim2_conf": {"lr": 0.002},
}
