"""The task CLI: ESPnet options still work, --print_config shows our registries, every shipped
config builds, and bad configuration is one clear error before anything is written."""
import io
import sys
from pathlib import Path

import pytest
import yaml

from espnet_bilevel.testing.task_helpers import train_cmd, write_config

REPO = Path(__file__).resolve().parents[2]


def test_print_config_shows_solver_loss_and_unlabeled_options(monkeypatch):
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    monkeypatch.setattr(sys, "argv", ["bilevel_asr_train"])  # ESPnet parses sys.argv here

    # (--print_config calls print_config(); ESPnet binds sys.stdout as its default argument at
    # import time, which pytest's capturing cannot see, so write to a buffer here)
    buf = io.StringIO()
    BilevelASRTask.print_config(file=buf)
    conf = yaml.safe_load(buf.getvalue())
    assert conf["solver"] == "bljust"
    assert conf["solver_conf"]["penalty_schedule"] == "epoch_linear"
    assert conf["ssl_loss"] == "cpc" and "temperature" in conf["ssl_loss_conf"]
    assert "train_unlab_data_path_and_name_and_type" in conf and "optim2" in conf
    assert "init_param" in conf and "dist_backend" in conf  # stock ESPnet options kept


def _is_stock_espnet(path: Path) -> bool:
    """Configs of stock ESPnet tasks (the HuBERT PT+FT reference) have no bilevel ``solver``."""
    return "solver" not in (yaml.safe_load(path.read_text()) or {})


TRAINING_CONFIGS = sorted(p for p in (REPO / "conf").rglob("*.yaml") if not p.name.startswith("decode"))
BILEVEL_CONFIGS = [str(p.relative_to(REPO)) for p in TRAINING_CONFIGS if not _is_stock_espnet(p)]
STOCK_CONFIGS = [str(p.relative_to(REPO)) for p in TRAINING_CONFIGS if _is_stock_espnet(p)]


@pytest.mark.parametrize("config", BILEVEL_CONFIGS)
def test_every_shipped_training_config_builds(config, tmp_path, tiny_corpus):
    """Each bilevel YAML under conf/ parses with the task parser and builds model, solver, optimizers."""
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    parser = BilevelASRTask.get_parser()
    args = parser.parse_args(["--config", str(REPO / config),
                              "--token_list", str(tiny_corpus["token_list"])])
    BilevelASRTask.build_solver(args)
    model = BilevelASRTask.build_model(args)
    assert len(BilevelASRTask.build_optimizers(args, model)) == 2
    groups = model.parameter_groups()
    assert groups["theta"] and groups["phi"]
    if args.ssl_loss is not None:
        assert groups["eta"]


def _stock_task(conf: dict):
    """The stock ESPnet task of a config: HubertTask for HuBERT pre-training, else ASRTask."""
    if conf.get("encoder") == "torchaudio_hubert":
        from espnet2.tasks.hubert import HubertTask

        return HubertTask
    from espnet2.tasks.asr import ASRTask

    return ASRTask


def test_stock_configs_are_the_hubert_reference_pairs():
    """Only the HuBERT reference is stock ESPnet (a bilevel config that lost its solver would
    otherwise silently leave the bilevel test above)."""
    assert all(Path(c).name.startswith("hubert_") for c in STOCK_CONFIGS), STOCK_CONFIGS
    assert {"conf/mini/hubert_pretrain.yaml", "conf/mini/hubert_finetune.yaml",
            "conf/tiny/hubert_pretrain.yaml", "conf/tiny/hubert_finetune.yaml"} <= set(STOCK_CONFIGS)


@pytest.mark.parametrize("config", STOCK_CONFIGS)
def test_every_shipped_stock_config_builds_with_stock_espnet(config, tiny_corpus):
    """The HuBERT PT+FT reference configs are plain ESPnet: the stock task parses and builds them."""
    conf = yaml.safe_load((REPO / config).read_text())
    task = _stock_task(conf)
    args = task.get_parser().parse_args(["--config", str(REPO / config),
                                         "--token_list", str(tiny_corpus["token_list"])])
    model = task.build_model(args)
    assert type(model).__module__.startswith("espnet2.")
    assert len(task.build_optimizers(args, model)) == 1
    assert args.input_size == 1 and args.frontend is None and args.normalize is None  # waveform in


@pytest.mark.parametrize("scale", sorted({Path(c).parent.name for c in STOCK_CONFIGS}))
def test_hubert_finetune_encoder_is_the_pretrain_encoder(scale, tiny_corpus, tmp_path):
    """hubert_ptft.sh initialises FT with --init_param <pt>:encoder:encoder and the same
    --n_clusters on both sides: every PT encoder tensor must load into FT's with its shape."""
    from espnet2.tasks.asr import ASRTask
    from espnet2.tasks.hubert import HubertTask

    n = 7
    tokens = tmp_path / "km_tokens.txt"
    tokens.write_text("".join(f"{i}\n" for i in range(n)) + "<unk>\n<sos/eos>\n")
    pt_args = HubertTask.get_parser().parse_args(
        ["--config", str(REPO / f"conf/{scale}/hubert_pretrain.yaml"), "--token_list", str(tokens),
         "--num_classes", str(n), "--token_type", "word"])
    ft_args = ASRTask.get_parser().parse_args(
        ["--config", str(REPO / f"conf/{scale}/hubert_finetune.yaml"),
         "--token_list", str(tiny_corpus["token_list"]), "--encoder_conf", f"num_classes={n}"])
    pt, ft = HubertTask.build_model(pt_args), ASRTask.build_model(ft_args)
    ft.encoder.load_state_dict(pt.encoder.state_dict(), strict=True)  # raises on any mismatch
    assert ft.encoder.finetuning and not pt.encoder.finetuning
    assert pt_args.collate_fn_conf["label_downsampling"] == 2  # 10 ms MFCC labels -> 20 ms frames
    assert pt_args.batch_size == ft_args.batch_size


@pytest.mark.parametrize("scale", sorted({Path(c).parent.name for c in STOCK_CONFIGS}))
def test_hubert_configs_train_forward_and_backward(scale, tiny_corpus, tmp_path):
    """A few training steps' forward/backward of both halves on random audio (masking is random,
    so several draws), with PT labels at the length hubert_train feeds them."""
    import torch
    from espnet2.tasks.asr import ASRTask
    from espnet2.tasks.hubert import HubertTask

    from espnet_bilevel.ssl_targets.mfcc_kmeans import num_label_frames

    tokens = tmp_path / "km_tokens.txt"
    tokens.write_text("".join(f"{i}\n" for i in range(5)) + "<unk>\n<sos/eos>\n")
    pt = HubertTask.build_model(HubertTask.get_parser().parse_args(
        ["--config", str(REPO / f"conf/{scale}/hubert_pretrain.yaml"), "--token_list", str(tokens),
         "--num_classes", "5"]))
    ft = ASRTask.build_model(ASRTask.get_parser().parse_args(
        ["--config", str(REPO / f"conf/{scale}/hubert_finetune.yaml"),
         "--token_list", str(tiny_corpus["token_list"]), "--encoder_conf", "num_classes=5"]))
    torch.manual_seed(0)
    n = 12000  # what HuBERTCollateFn hands over: a batch cropped to one length, labels downsampled
    speech, lengths = 0.1 * torch.randn(2, n), torch.tensor([n, n])
    labels = torch.randint(0, 5, (2, num_label_frames(n)))[:, ::2]
    chars = torch.randint(3, 8, (2, 6))
    for _ in range(8):
        for model, text in ((pt, labels), (ft, chars)):
            model.train()
            loss, stats, _ = model(speech, lengths, text, torch.tensor([text.shape[1]] * 2))
            assert torch.isfinite(loss)
            loss.backward()


@pytest.mark.parametrize("config", STOCK_CONFIGS)
def test_hubert_channel_masks_never_round_to_zero_spans(config):
    """torchaudio 2.9's channel masking raises IndexError when mask_channel_prob * dim / length
    rounds down to 0 spans (it has no minimum, unlike time masking): the configs must stay >= 1."""
    enc = yaml.safe_load((REPO / config).read_text())["encoder_conf"]
    prob = enc.get("mask_channel_prob", 0.0)
    if prob > 0:
        assert prob * enc["encoder_embed_dim"] / enc.get("mask_channel_length", 10) >= 1.0


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO))
                                          for p in (REPO / "conf").glob("decode*.yaml")))
def test_every_shipped_decode_config_is_valid_for_its_decoder(config):
    """A ctc_best_path config is for decode_many's best-path decoder, every other one for asr_inference."""
    from espnet_bilevel.bin.decode_many import best_path_device

    path = REPO / config
    device = best_path_device(["--config", str(path), "--ngpu", "0", "--batch_size", "1"], path)
    if "ctc_best_path" in yaml.safe_load(path.read_text()):
        assert device == "cpu"
        return
    assert device is None
    from espnet2.bin.asr_inference import get_parser

    args = get_parser().parse_args(["--config", str(path), "--output_dir", "x",
                                    "--data_path_and_name_and_type", "a,speech,sound"])
    assert args.beam_size >= 1


BAD_CASES = {
    "unknown_solver_conf_key": (dict(solver_conf={"n_jiont": 2}), [], "unknown key 'n_jiont'"),
    "n_joint_zero": (dict(solver_conf={"n_joint": 0}), [], "n_joint = 0"),
    "negative_gamma": (dict(solver_conf={"penalty_schedule": "constant",
                                         "penalty_schedule_conf": {"gamma": -1}}), [],
                       "gamma must be >= 0"),
    "unknown_ssl_conf_key": (dict(ssl_loss_conf={"temprature": 0.1}), [], "unknown key 'temprature'"),
    "finetune_too_long": (dict(solver_conf={"finetune_epochs": 5}), [], "must be smaller than max_epoch"),
    "missing_stats_file": (dict(), ["--normalize_conf", "stats_file=/nonexistent/feats_stats.npz"],
                           "/nonexistent/feats_stats.npz"),
    "missing_unlab_scp": (dict(), ["--train_unlab_data_path_and_name_and_type",
                                   "/nonexistent/wav.scp,speech,sound"], "/nonexistent/wav.scp"),
    "ssl_solver_without_ssl_loss": (dict(ssl_loss=None), [], "--ssl_loss is null"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_configuration_is_one_clear_error_before_anything_is_written(
    case, tmp_path, tiny_corpus, tiny_stats, capsys
):
    from espnet_bilevel.bin.bilevel_asr_train import main

    overrides, extra, message = BAD_CASES[case]
    cfg = write_config(tmp_path / "bad.yaml", **overrides)
    out = tmp_path / "exp"
    with pytest.raises(SystemExit) as e:
        main(train_cmd(tiny_corpus, tiny_stats, out, cfg, extra=extra))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "ERROR:" in err and message in err
    assert not (out / "config.yaml").exists() and not (out / "checkpoint.pth").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(solver="bilevel_magic"), "--solver must be one of"),
        (dict(ssl_loss="hubert_ce"), "--ssl_loss must be one of"),
        (dict(not_an_option=3), "not_an_option"),
        (dict(batch_size="sixteen"), "batch_size"),  # a wrong type in the YAML
    ],
)
def test_unknown_names_and_yaml_keys_are_clear_errors(overrides, message, tmp_path,
                                                         tiny_corpus, tiny_stats, capsys):
    from espnet_bilevel.bin.bilevel_asr_train import main

    cfg = write_config(tmp_path / "bad.yaml", **overrides)
    with pytest.raises(SystemExit) as e:
        main(train_cmd(tiny_corpus, tiny_stats, tmp_path / "exp", cfg))
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def _corrupt_copy(corpus, tmp_path, split, fname, edit):
    """A copy of one data dir of the tiny corpus with one file edited."""
    import shutil

    new = tmp_path / f"bad_{split}"
    shutil.copytree(corpus[split], new)
    path = new / fname
    path.write_text(edit(path.read_text()))
    return new


DATA_CASES = {
    "missing_audio": ("train", "wav.scp",
                      lambda t: t.replace(t.split()[1], "/nonexistent/a.wav", 1),
                      "audio file(s) not found"),
    "empty_transcript": ("train", "text",
                         lambda t: "\n".join([t.splitlines()[0].split()[0]] + t.splitlines()[1:]) + "\n",
                         "empty transcript"),
    "ids_differ": ("train", "text", lambda t: "\n".join(t.splitlines()[1:]) + "\n",
                   "only in wav.scp"),
    "duplicated_id": ("train", "text", lambda t: t + t.splitlines()[0] + "\n", "duplicated id"),
    "empty_unlabeled_set": ("train_unlab", "wav.scp", lambda t: "", "no entries"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_is_one_clear_error_naming_the_file(case, tmp_path, tiny_corpus, tiny_stats,
                                                     capsys):
    from espnet_bilevel.bin.bilevel_asr_train import main

    split, fname, edit, message = DATA_CASES[case]
    corpus = dict(tiny_corpus)
    corpus[split] = _corrupt_copy(tiny_corpus, tmp_path, split, fname, edit)
    out = tmp_path / "exp"
    with pytest.raises(SystemExit) as e:
        main(train_cmd(corpus, tiny_stats, out, write_config(tmp_path / "c.yaml")))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and str(corpus[split]) in err
    assert not (out / "config.yaml").exists()


def test_accepted_conf_keys_follows_kwargs_to_the_base_class():
    import torch

    from espnet_bilevel.tasks.bilevel_asr import accepted_conf_keys

    class Base:
        def __init__(self, a=1, *, b=2):
            pass

    class Forwarding(Base):
        def __init__(self, c=3, **kwargs):  # forwards the rest to Base
            super().__init__(**kwargs)

    class Inherits(Forwarding):  # no __init__ of its own
        pass

    class Open:
        def __init__(self, **kwargs):
            pass

    assert accepted_conf_keys(Base) == ["a", "b"]
    assert accepted_conf_keys(Forwarding) == ["c", "a", "b"]
    assert accepted_conf_keys(Inherits) == ["c", "a", "b"]
    assert accepted_conf_keys(Open) is None  # takes anything: nothing to check
    assert accepted_conf_keys(torch.nn.Module) is None
