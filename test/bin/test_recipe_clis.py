"""Tests of the small CLIs behind recipe stages 12-16: decode_many/export_many (input checks),
compare_systems (table + plots from fake experiment dirs), make_model_card and hf_upload (dry run,
and a clear error without network/package)."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from espnet_bilevel.bin import compare_systems, hf_upload, make_model_card
from espnet_bilevel.data.scoring import score


def run(module, *args):
    return subprocess.run([sys.executable, "-m", f"espnet_bilevel.bin.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def fake_exp(root: Path, name: str, solver: str, wall: int = 10, with_steps: bool = False) -> Path:
    exp = root / f"asr_{name}_raw_char"
    (exp / "export").mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump({
        "solver": solver, "solver_conf": {"penalty_schedule": "epoch_linear", "penalty_schedule_conf": {"gamma_max": 1.0}},
        "encoder": "conformer", "encoder_conf": {"num_blocks": 2, "output_size": 16}, "max_epoch": 2,
        "ssl_loss": "cpc", "optim": "adam", "optim2": "adam"}))
    torch.save({"encoder.w": torch.zeros(10, 10), "ctc.b": torch.zeros(5)}, exp / "export" / "model.pth")
    stats = {e: {"train": {"time": datetime.timedelta(seconds=2), "loss": 1.0},
                 "valid": {"time": datetime.timedelta(seconds=1), "cer_ctc": 1.0 / e}} for e in (1, 2)}
    torch.save({"reporter": {"stats": stats, "epoch": 2}, "model": {}, "optimizers": []}, exp / "checkpoint.pth")
    (exp / "train_wall_seconds").write_text(f"{wall}\n")
    ref = root / "ref.txt"
    ref.write_text("u1 A B C\nu2 D E\n")
    for dset in ("dev", "test"):
        d = exp / "decode_x" / dset
        d.mkdir(parents=True)
        (d / "text").write_text("u1 A B\nu2 D E\n")
        score(ref, d / "text", d / "scoring", use_sclite=False)
    (exp / "RESULTS.md").write_text(f"# {name}\n\n### WER\n\n|dataset|Err|\n|---|---|\n|test|33.3|\n")
    if with_steps:
        (exp / "steps").mkdir()
        rows = [{"epoch": 1, "step": i, "phase": "lower" if i < 3 else "joint", "gamma": 0.1 * i,
                 "loss_sup": None if i < 3 else 5.0 - i, "loss_ssl": 2.0 - 0.1 * i} for i in range(1, 6)]
        (exp / "steps" / "epoch1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return exp


def test_compare_systems(tmp_path, capsys):
    sup = fake_exp(tmp_path, "supervised", "supervised", wall=10)
    pt = fake_exp(tmp_path, "pt", "pretrain", wall=5)
    ptft = fake_exp(tmp_path, "ptft", "supervised", wall=7)
    bl = fake_exp(tmp_path, "bljust", "bljust", wall=20, with_steps=True)
    out = tmp_path / "compare"
    rc = compare_systems.main(["--system", f"supervised={sup}", "--system", f"ptft={ptft}", "--pre_exp", f"ptft={pt}",
                               "--system", f"bljust={bl}", "--decode_dir", "decode_x", "--test_sets", "dev", "test",
                               "--out_dir", str(out)])
    assert rc == 0
    md = (out / "compare.md").read_text()
    assert "| supervised | 0.1 k | 10 | 20.0 | 25.0 | 20.0 | 25.0 |" in md
    assert "| ptft | 0.1 k | 12 |" in md  # PT + FT wall time
    rows = json.loads((out / "compare.json").read_text())
    assert rows[1]["curve"][0][0] == pytest.approx(6 + 3)  # FT epoch 1 starts after the 2 PT epochs
    for png in ("dev_cer_vs_wall_time.png", "bljust_losses.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    rc = compare_systems.main(["--system", f"x={tmp_path / 'nope'}", "--decode_dir", "d", "--test_sets", "t",
                               "--out_dir", str(out)])
    assert rc == 1 and "experiment dir not found" in capsys.readouterr().err


def test_loss_plots_follow_the_solver_not_the_system_name(tmp_path):
    # a BL-JUST run under any name gets its loss plot; a run named like one but trained otherwise does not
    mine = fake_exp(tmp_path, "mine", "bljust", with_steps=True)
    fake = fake_exp(tmp_path, "x_bljust", "weighted_sum", with_steps=True)
    out = tmp_path / "compare"
    rc = compare_systems.main(["--system", f"my_bilevel={mine}", "--system", f"x_bljust={fake}",
                               "--decode_dir", "decode_x", "--test_sets", "dev", "test", "--out_dir", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.glob("*_losses.png")) == ["my_bilevel_losses.png"]
    assert f"`{out}/my_bilevel_losses.png`" in (out / "compare.md").read_text()


def test_model_card_gamma_section_for_joint_solvers_only(tmp_path):
    def card(name, solver):
        exp = fake_exp(tmp_path, name, solver, with_steps=True)
        return make_model_card.build_card(exp, name, repo="me/x", train_set="tr", unlab_set="un", valid_set="dev",
                                          recipe="mini_synth", command="run.sh", dump_dir=tmp_path)
    assert "## Penalty / weight schedule (gamma)" in card("any_joint_name", "weighted_sum")
    assert "## Penalty / weight schedule (gamma)" not in card("bljust", "supervised")


def make_pack(tmp_path: Path, exp: Path) -> Path:
    zpath = tmp_path / "pack.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("meta.yaml", "files: {}\n")
        z.write(exp / "export" / "model.pth", "exp/x/export/model.pth")
    return zpath


def test_model_card_and_hf_dry_run(tmp_path, capsys):
    bl = fake_exp(tmp_path, "bljust", "bljust", with_steps=True)
    card = make_model_card.build_card(bl, "bljust", repo="me/bl", train_set="tr", unlab_set="un", valid_set="dev",
                                      recipe="mini_synth", command="run.sh --small true", dump_dir=tmp_path)
    assert card.startswith("---\ntags:") and "# me/bl" in card and "`epoch_linear`" in card
    assert "| 1 | 0.1 | 0.5 | joint 3, lower 2 |" in card and "run.sh --small true" in card
    pack = make_pack(tmp_path, bl)
    out = tmp_path / "hf"
    rc = hf_upload.main(["--exp", str(bl), "--system", "bljust", "--pack", str(pack), "--repo", "me/bl",
                         "--out_dir", str(out), "--dry_run"])
    assert rc == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "README.md", "exp/x/export/model.pth", "meta.yaml"]
    assert "dry run: nothing uploaded" in capsys.readouterr().out
    rc = hf_upload.main(["--exp", str(bl), "--system", "bljust", "--pack", str(tmp_path / "missing.zip"),
                         "--repo", "me/bl", "--out_dir", str(out), "--dry_run"])
    assert rc == 1 and "pack not found (run stage 14 first)" in capsys.readouterr().err


def test_model_card_of_a_stock_espnet_system(tmp_path):
    """hubert_ptft's FT half is a stock ESPnet experiment: no solver / SSL lines, the PT run named."""
    exp = fake_exp(tmp_path, "hubert_ptft", "supervised")
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    for key in ("solver", "solver_conf", "ssl_loss", "optim2"):
        conf.pop(key)
    conf.update(encoder="torchaudiohubert", encoder_conf={"encoder_num_layers": 2, "encoder_embed_dim": 16})
    (exp / "config.yaml").write_text(yaml.safe_dump(conf))
    pt = tmp_path / "asr_hubert_pt_raw_char"
    pt.mkdir()
    (pt / "config.yaml").write_text(yaml.safe_dump({"max_epoch": 3, "model": "hubert"}))
    card = make_model_card.build_card(exp, "hubert_ptft", pt_exp=pt)
    assert "system **hubert_ptft**: ESPnet's HuBERT pre-training" in card
    assert "- trainer: stock ESPnet `ASRTask`" in card and "solver" not in card
    assert "- encoder: torchaudiohubert (2 blocks, dim 16)" in card
    assert f"- pre-training run: `{pt}` (stock ESPnet task, 3 epochs)" in card


def test_hf_upload_without_network_is_a_clear_error(tmp_path, monkeypatch, capsys):
    bl = fake_exp(tmp_path, "bljust", "bljust")
    pack = make_pack(tmp_path, bl)

    def no_network(*a, **k):
        raise hf_upload.UploadError("cannot reach huggingface.co:443 (offline); no network?")

    monkeypatch.setattr(hf_upload, "check_network", no_network)
    rc = hf_upload.main(["--exp", str(bl), "--system", "bljust", "--pack", str(pack), "--repo", "me/bl",
                         "--out_dir", str(tmp_path / "hf")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("ERROR: ")
    assert ("no network" in err) or ("huggingface_hub is not installed" in err)


def test_decode_and_export_many_input_errors(tmp_path):
    jobs = tmp_path / "jobs.tsv"
    jobs.write_text("only\tthree\tfields\n")
    proc = run("decode_many", "--jobs", jobs)
    assert proc.returncode != 0 and "expected 5 tab-separated fields" in proc.stderr
    jobs.write_text("\t".join([str(tmp_path / "o"), "/no/config.yaml", "m", "w", "k"]) + "\n")
    proc = run("decode_many", "--jobs", jobs)
    assert proc.returncode != 0 and "file not found: /no/config.yaml" in proc.stderr
    proc = run("export_many", "--exp", tmp_path / "exp")
    assert proc.returncode == 1 and "config.yaml: not found (train the system first: stage 11)" in proc.stderr
