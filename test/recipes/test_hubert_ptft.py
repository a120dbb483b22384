"""scripts/hubert_ptft.sh (ESPnet's own HuBERT PT + stock ASR FT, the compare table's reference row):
one end-to-end run with the tiny configs on the tiny corpus, a no-op rerun, and input errors."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "egs2" / "TEMPLATE" / "asr1" / "scripts" / "hubert_ptft.sh"
PYTHON = REPO / "tools" / "venv" / "bin" / "python"
N_CLUSTERS = 8
# frozen in fine-tuning (finetuning: true) or unused by it (the label-prediction head): after FT
# these still hold exactly what --init_param loaded
UNTOUCHED_BY_FT = ("encoder.hubert_pretrain_model.wav2vec2.feature_extractor.",
                   "encoder.hubert_pretrain_model.logit_generator.")


def script_args(corpus, stats, root: Path, **overrides):
    opts = dict(
        python=str(PYTHON), train_dir=str(corpus["train"]), unlab_dir=str(corpus["train_unlab"]),
        valid_dir=str(corpus["dev"]), token_list=str(corpus["token_list"]), token_type="char",
        asr_stats_dir=str(stats), pt_config=str(REPO / "conf/tiny/hubert_pretrain.yaml"),
        ft_config=str(REPO / "conf/tiny/hubert_finetune.yaml"), pt_exp=str(root / "exp/hubert_pt"),
        ft_exp=str(root / "exp/hubert_ft"), ngpu="0", n_clusters=str(N_CLUSTERS),
        kmeans_args="--fit_portion 1.0",
    )
    opts.update(overrides)
    args = []
    for k, v in opts.items():
        if v is not None:
            args += [f"--{k}", v]
    return args


def run_script(args, cwd, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def seconds_file(path: Path) -> int:
    text = path.read_text()
    assert text.strip().isdigit() and text.endswith("\n"), text
    return int(text)


@pytest.mark.slow
def test_end_to_end_tiny(tiny_corpus, tiny_stats, tmp_path):
    import torch

    start = time.time()
    proc = run_script(script_args(tiny_corpus, tiny_stats, tmp_path), cwd=tmp_path)
    elapsed = time.time() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    print(f"hubert_ptft.sh (tiny): {elapsed:.0f} s")
    pt, ft = tmp_path / "exp/hubert_pt", tmp_path / "exp/hubert_ft"
    for step in ("step a:", "step b:", "step c:", "step d:"):
        assert step in proc.stderr
    assert "(log: " in proc.stderr and "finished: PT" in proc.stderr

    # artifacts the compare stage and the later recipe stages rely on
    for f in ("config.yaml", "valid.cer_ctc.ave.pth", "train.log", ".train.done", "train_wall_seconds"):
        assert (ft / f).exists(), f
    for f in ("config.yaml", "valid.loss.best.pth", "train.log", ".train.done", "train_wall_seconds",
              "labels_wall_seconds", "stats_wall_seconds", "labels/.done", "stats/.done",
              "stats/train/text_shape.word", "stats/valid/speech_shape", "logs/labels.log", "logs/stats.log"):
        assert (pt / f).exists(), f
    for f in (pt / "train_wall_seconds", ft / "train_wall_seconds", pt / "labels_wall_seconds"):
        assert 0 <= seconds_file(f) < elapsed + 1
    for f in (pt / "train_cpu_seconds", ft / "train_cpu_seconds"):  # CPU: > 0, at most 2 busy cores
        assert 0 < seconds_file(f) < 2 * elapsed + 1
    assert not list(tmp_path.rglob("*.tmp")) and not (pt / ".train_wall_partial").exists()
    assert not (pt / ".train_cpu_partial_ms").exists()
    assert (ft / "valid.cer_ctc.ave.pth").resolve().name == "valid.cer_ctc.ave_2best.pth"
    assert "Averaging 2best models" in (ft / "logs/average_checkpoints.log").read_text()

    # labels: one cluster id per 10 ms frame of every unlabeled / dev utterance; word tokens = ids
    tokens = (pt / "labels/tokens.txt").read_text().split()
    assert tokens == [str(i) for i in range(N_CLUSTERS)] + ["<unk>", "<sos/eos>"]
    for split, name in (("train_unlab", "train"), ("dev", "valid")):
        scp = dict(line.split() for line in (tiny_corpus[split] / "wav.scp").read_text().splitlines())
        labels = dict(line.split(maxsplit=1) for line in (pt / "labels" / name / "text").read_text().splitlines())
        assert labels.keys() == scp.keys()
        for utt, wav in scp.items():
            assert len(labels[utt].split()) == 1 + (sf.info(wav).frames - 400) // 160
    pt_conf = (pt / "config.yaml").read_text()
    assert "encoder: torchaudio_hubert" in pt_conf and f"num_classes: {N_CLUSTERS}" in pt_conf

    # the FT experiment is stock ESPnet: the stock ASR parser accepts its config, and the stock task
    # builds the model and loads the averaged checkpoint
    from espnet2.asr.encoder.hubert_encoder import TorchAudioHuBERTPretrainEncoder
    from espnet2.tasks.asr import ASRTask

    import yaml

    ft_conf = yaml.safe_load((ft / "config.yaml").read_text())
    stock_options = vars(ASRTask.get_parser().parse_args([]))
    assert set(ft_conf) - set(stock_options) <= {"version", "distributed"}  # what ESPnet itself adds
    assert ft_conf["encoder"] == "torchaudiohubert" and ft_conf["encoder_conf"]["num_classes"] == N_CLUSTERS
    assert "espnet_bilevel" not in (ft / "config.yaml").read_text()
    model, _ = ASRTask.build_model_from_file(ft / "config.yaml", ft / "valid.cer_ctc.ave.pth", "cpu")
    assert type(model).__module__.startswith("espnet2.")
    assert isinstance(model.encoder, TorchAudioHuBERTPretrainEncoder) and model.encoder.finetuning
    wav = torch.as_tensor(sf.read(next(iter(scp.values())), dtype="float32")[0])[None]
    with torch.no_grad():
        out, out_lens = model.eval().encode(wav, torch.tensor([wav.shape[1]]))
    assert out.shape == (1, int(out_lens[0]), 16)

    # --init_param took effect: the encoder started from the PT weights. FT leaves the frozen conv
    # extractor and the unused label head as it loaded them, so they equal PT's bit for bit, while a
    # freshly initialised encoder has other values.
    pt_state = torch.load(pt / "valid.loss.best.pth", map_location="cpu")
    ft_state = torch.load(ft / "checkpoint.pth", map_location="cpu", weights_only=False)["model"]
    fresh, _ = ASRTask.build_model_from_file(ft / "config.yaml", None, "cpu")
    fresh_state = fresh.state_dict()
    encoder_keys = [k for k in pt_state if k.startswith("encoder.")]
    assert encoder_keys and set(encoder_keys) <= set(ft_state)
    checked = [k for k in encoder_keys if k.startswith(UNTOUCHED_BY_FT) and pt_state[k].is_floating_point()]
    assert len(checked) >= 10
    for k in checked:
        assert torch.equal(ft_state[k], pt_state[k]), k
    assert any(not torch.equal(fresh_state[k], pt_state[k]) for k in checked)
    # ...and the rest of the encoder was trained on top of them
    trained = [k for k in encoder_keys if ".wav2vec2.encoder.transformer." in k and k.endswith("weight")]
    assert any(not torch.equal(ft_state[k], pt_state[k]) for k in trained)

    # a rerun finds every marker and runs nothing
    start = time.time()
    again = run_script(script_args(tiny_corpus, tiny_stats, tmp_path), cwd=tmp_path, timeout=60)
    assert again.returncode == 0, again.stderr
    assert time.time() - start < 10
    for msg in ("labels exists; skipped", "stats exists; skipped", "hubert_pt already trained; skipped",
                "hubert_ft already trained; skipped"):
        assert msg in again.stderr, again.stderr
    assert seconds_file(ft / "train_wall_seconds") >= 0

    # other labels than the trained ones are refused, not silently mixed
    other = run_script(script_args(tiny_corpus, tiny_stats, tmp_path, n_clusters="9"), cwd=tmp_path, timeout=60)
    assert other.returncode != 0
    assert f"holds {N_CLUSTERS} clusters, but --n_clusters is 9" in other.stderr


@pytest.mark.parametrize("overrides, message", [
    (dict(unlab_dir="/nonexistent/unlab"), "required input '/nonexistent/unlab/wav.scp' is missing"),
    (dict(token_type="word"), "--token_type must be char or bpe, got 'word'"),
    (dict(token_type="bpe"), "--bpemodel, needed by --token_type bpe"),
    (dict(ngpu=None), "--ngpu is required"),
    (dict(n_clusters="many"), "--n_clusters must be a non-negative integer"),
    (dict(ft_exp="SAME", pt_exp="SAME"), "--pt_exp and --ft_exp must differ"),
])
def test_bad_invocation_is_one_clear_error_before_anything_runs(overrides, message, tiny_corpus, tmp_path):
    stats = tmp_path / "stats"
    for m in ("train", "valid"):
        (stats / m).mkdir(parents=True)
        (stats / m / "speech_shape").write_text("u 16000\n")
        for t in ("char", "bpe"):
            (stats / m / f"text_shape.{t}").write_text("u 5,12\n")
    proc = run_script(script_args(tiny_corpus, stats, tmp_path, **overrides), cwd=tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "ERROR: " in proc.stderr and message in proc.stderr, proc.stderr
    assert not (tmp_path / "exp").exists()


def test_fbank_statistics_are_refused(tiny_corpus, tmp_path):
    stats = tmp_path / "stats"
    for m in ("train", "valid"):
        (stats / m).mkdir(parents=True)
        (stats / m / "speech_shape").write_text("u 98,80\n")
        (stats / m / "text_shape.char").write_text("u 5,12\n")
    proc = run_script(script_args(tiny_corpus, stats, tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode != 0 and "needs raw audio (--feats_type raw)" in proc.stderr
