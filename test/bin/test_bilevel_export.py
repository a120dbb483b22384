"""Export a trained bilevel model to a stock ESPnet model: it decodes with ESPnet's own
asr_inference and its CTC posteriors equal the bilevel model's."""
from pathlib import Path

import pytest
import torch
import yaml

from espnet_bilevel.testing.task_helpers import train_cmd, write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_corpus, tiny_stats):
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    root = tmp_path_factory.mktemp("export")
    cfg = write_config(root / "bljust.yaml", solver="bljust", solver_conf={"finetune_epochs": 1})
    exp = root / "exp"
    BilevelASRTask.main(cmd=train_cmd(tiny_corpus, tiny_stats, exp, cfg))
    return exp


def test_export_decodes_with_stock_espnet_and_keeps_posteriors(trained, tiny_corpus, tmp_path):
    from espnet2.bin.asr_inference import main as asr_inference_main
    from espnet2.tasks.asr import ASRTask

    from espnet_bilevel.bin.bilevel_export import export
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    out = export(trained / "config.yaml", trained / "valid.cer_ctc.ave.pth", tmp_path / "export")
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["model"] == "espnet"
    assert not {"solver", "ssl_loss", "optim2", "train_unlab_shape_file"} & set(conf)
    state = torch.load(out / "model.pth", map_location="cpu")
    assert not any(k.startswith("ssl_loss.") for k in state)

    stock, _ = ASRTask.build_model_from_file(out / "config.yaml", out / "model.pth", "cpu")
    ours, _ = BilevelASRTask.build_model_from_file(
        trained / "config.yaml", trained / "valid.cer_ctc.ave.pth", "cpu"
    )
    assert type(stock).__name__ == "ESPnetASRModel"
    stock.eval(), ours.eval()
    speech = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 11000])
    with torch.no_grad():
        e1, l1 = ours.encode(speech, lengths)
        e2, l2 = stock.encode(speech, lengths)
        torch.testing.assert_close(ours.ctc.log_softmax(e1), stock.ctc.log_softmax(e2),
                                   rtol=0, atol=0)
    assert torch.equal(l1, l2)

    dec = tmp_path / "decode"
    dev = Path(tiny_corpus["dev"])
    decode_conf = tmp_path / "decode.yaml"
    decode_conf.write_text("beam_size: 2\nctc_weight: 1.0\nlm_weight: 0.0\n")
    asr_inference_main(cmd=[
        "--ngpu", "0", "--batch_size", "1", "--output_dir", str(dec),
        "--data_path_and_name_and_type", f"{dev}/wav.scp,speech,sound",
        "--key_file", f"{dev}/wav.scp", "--config", str(decode_conf),
        "--asr_train_config", str(out / "config.yaml"), "--asr_model_file", str(out / "model.pth"),
    ])
    hyp_ids = [line.split()[0] for line in (dec / "1best_recog" / "text").read_text().splitlines()]
    ref_ids = [line.split()[0] for line in (dev / "text").read_text().splitlines()]
    assert sorted(hyp_ids) == sorted(ref_ids)


def test_export_errors_name_the_file(tmp_path, capsys):
    from espnet_bilevel.bin.bilevel_export import main

    with pytest.raises(SystemExit) as e:
        main(["--train_config", str(tmp_path / "nope.yaml"), "--model_file", "x.pth",
              "--output_dir", str(tmp_path / "o")])
    assert e.value.code == 1
    assert "nope.yaml" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_exported_model_packs_and_loads_with_from_pretrained(trained, tiny_stats, tmp_path,
                                                             monkeypatch):
    import soundfile as sf
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.bin.pack import main as pack_main

    from espnet_bilevel.bin.bilevel_export import export

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = export(trained / "config.yaml", trained / "valid.cer_ctc.ave.pth", tmp_path / "export")
    zip_path = tmp_path / "packed.zip"
    pack_main(cmd=["asr", "--asr_train_config", str(out / "config.yaml"),
                   "--asr_model_file", str(out / "model.pth"),
                   "--option", str(tiny_stats / "train" / "feats_stats.npz"),
                   "--outpath", str(zip_path)])
    assert zip_path.exists()
    s2t = Speech2Text.from_pretrained(str(zip_path), device="cpu", beam_size=1, ctc_weight=1.0,
                                      lm_weight=0.0)
    wav = next(iter(Path(trained).parents[1].glob("**/dev/*.wav")), None)
    speech = torch.randn(16000) * 0.1 if wav is None else torch.tensor(sf.read(wav)[0])
    results = s2t(speech.float())
    assert isinstance(results[0][0], str)


# ------------------------------------------------------------------ a stock ESPnet experiment

# TINY_CONFIG without the options that only the bilevel task knows
BILEVEL_ONLY = ("solver", "solver_conf", "ssl_loss", "ssl_loss_conf", "optim2", "optim2_conf")


@pytest.fixture(scope="module")
def stock_trained(tmp_path_factory, tiny_corpus, tiny_stats):
    """An exp dir of plain ``espnet2.bin.asr_train`` (as the FT half of hubert_ptft leaves it)."""
    from espnet2.tasks.asr import ASRTask

    from espnet_bilevel.testing.dummies import TINY_CONFIG

    root = tmp_path_factory.mktemp("stock")
    cfg = root / "stock.yaml"
    cfg.write_text(yaml.safe_dump({k: v for k, v in TINY_CONFIG.items() if k not in BILEVEL_ONLY}))
    cmd = train_cmd(tiny_corpus, tiny_stats, root / "exp", cfg)
    i = cmd.index("--train_unlab_data_path_and_name_and_type")
    del cmd[i:i + 4]  # and its shape file: the stock task has no unlabeled stream
    ASRTask.main(cmd=cmd)
    return root / "exp"


def test_stock_espnet_exp_dir_exports_as_is(stock_trained, tmp_path):
    """export_many (stage 12) accepts a stock exp dir: same options, same weights, strict load."""
    from espnet2.tasks.asr import ASRTask

    from espnet_bilevel.bin import export_many

    exp = stock_trained
    source = yaml.safe_load((exp / "config.yaml").read_text())
    assert "solver" not in source and source["model"] == "espnet"
    assert export_many.main(["--exp", str(exp), "--model", "valid.cer_ctc.ave.pth"]) == 0
    out = exp / "export"
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert {k: v for k, v in source.items() if k not in ("version", "distributed", "required")} == conf
    exported = torch.load(out / "model.pth", map_location="cpu")
    original = torch.load(exp / "valid.cer_ctc.ave.pth", map_location="cpu")
    assert exported.keys() == original.keys()
    assert all(torch.equal(exported[k], original[k]) for k in original)
    model, _ = ASRTask.build_model_from_file(out / "config.yaml", out / "model.pth", "cpu")
    assert type(model).__name__ == "ESPnetASRModel"
    # a second call finds the export up to date
    assert export_many.main(["--exp", str(exp), "--model", "valid.cer_ctc.ave.pth"]) == 0
    assert (out / "source_model").read_text().startswith("valid.cer_ctc.ave.pth -> ")
