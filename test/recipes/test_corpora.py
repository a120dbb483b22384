"""Data stages (1-5) of the LibriSpeech and TED-LIUM 2 recipes on small fake corpora in the real
layouts, fetched through the real download -> verify -> extract path from a local file:// mirror,
and stages 1-13 of mini_an4 on the real .sph files (read in place)."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from conftest import output, run_recipe
from data_test_utils import write_audio, write_lines
from test_librispeech import make_fake_librispeech
from test_tedlium2 import make_fake_tedlium2

from espnet_bilevel.data.kaldi_dir import read_table, validate_data_dir

LIBRI_EXTRA = {  # parts the data-utility fake does not have: speaker -> chapter -> sentences
    "dev-other": {"116": {"288045": ["AS I APPROACHED THE CITY"]}},
    "test-other": {"1688": {"142285": ["THERE WAS A KNOCK"]}},
    "train-clean-100": {"103": {"1240": ["CHAPTER ONE MISSUS RACHEL", "IN THE HOLLOW"]},
                        "1034": {"121119": ["THE SECOND", "A THIRD ONE HERE"]},
                        "1040": {"133433": ["FOUR FIVE SIX"]}},
    "train-clean-360": {"100": {"121669": ["UNLABELED ONE", "UNLABELED TWO"]}},
    "train-other-500": {"1006": {"135212": ["UNLABELED THREE"]}},
}


def librispeech_mirror(tmp_path: Path) -> Path:
    """<mirror>/<part>.tar.gz for all seven parts, each holding LibriSpeech/<part>/<spk>/<chapter>/."""
    build = make_fake_librispeech(tmp_path / "build", parts=("dev-clean", "test-clean"))
    for part, speakers in LIBRI_EXTRA.items():
        for spk, chapters in speakers.items():
            for chapter, sentences in chapters.items():
                d = build / "LibriSpeech" / part / spk / chapter
                lines = []
                for i, sentence in enumerate(sentences):
                    utt = f"{spk}-{chapter}-{i:04d}"
                    write_audio(d / f"{utt}.flac", seconds=1.0, fmt="FLAC")
                    lines.append(f"{utt} {sentence}")
                write_lines(d / f"{spk}-{chapter}.trans.txt", lines)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for part in sorted(p.name for p in (build / "LibriSpeech").iterdir()):
        with tarfile.open(mirror / f"{part}.tar.gz", "w:gz") as tar:
            tar.add(build / "LibriSpeech" / part, arcname=f"LibriSpeech/{part}")
    return mirror


def test_librispeech_data_stages(recipe_copy, tmp_path):
    d = recipe_copy("librispeech")
    mirror = librispeech_mirror(tmp_path)
    corpus = tmp_path / "corpus"
    # the official checksums cannot match a fake archive: the download stage must say so clearly
    proc = run_recipe(d, "--librispeech", str(corpus), "--local_extra", f"--url_base {mirror.as_uri()}",
                      "--stop_stage", "1", timeout=300)
    assert proc.returncode != 0
    assert "ERROR: stage 1 failed" in proc.stderr and "log: exp/logs/stage1_data.log" in proc.stderr
    assert "corrupt or truncated: sha256" in proc.stderr

    proc = run_recipe(d, "--librispeech", str(corpus), "--labeled_subset_hours", "0.0006",
                      "--local_extra", f"--url_base {mirror.as_uri()} --verify false",
                      "--stop_stage", "5", "--nbpe", "40", timeout=300)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert (corpus / "LibriSpeech" / "train-other-500").is_dir()
    data = d / "data"
    assert len(read_table(data / "dev" / "text")) == 4  # dev-clean 3 + dev-other 1
    assert not (data / "train_unlab" / "text").exists()
    assert len(read_table(data / "train_unlab" / "utt2spk")) == 3
    subset = read_table(data / "train_clean_100_0.0006h" / "utt2spk")
    assert 0 < len(subset) < 5
    # speed perturbation 0.9/1.0/1.1 of the labeled subset, formatted and filtered
    sp = read_table(d / "dump" / "raw" / "train_clean_100_0.0006h_sp" / "utt2spk")
    assert len(sp) == 3 * len(subset) and any(u.startswith("sp0.9-") for u in sp)
    validate_data_dir(d / "dump" / "raw" / "train_clean_100_0.0006h_sp", check_audio=True)
    for test_set in ("dev_clean", "dev_other", "test_clean", "test_other"):
        assert (d / "dump" / "raw" / test_set / "utt2num_samples").is_file()
    assert read_table(d / "dump" / "raw" / "test_clean" / "wav.scp")["1089-134686-0000"].endswith(".flac")
    tokens = (data / "token_list" / "bpe_unigram40" / "tokens.txt").read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    assert (data / "token_list" / "bpe_unigram40" / "bpe.model").is_file()


def test_tedlium2_data_stages(recipe_copy, tmp_path):
    d = recipe_copy("tedlium2")
    built = make_fake_tedlium2(tmp_path / "build")
    archive = tmp_path / "mirror" / "TEDLIUM_release2.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(built / "TEDLIUM_release2", arcname="TEDLIUM_release2")
    corpus = tmp_path / "corpus"
    proc = run_recipe(d, "--tedlium2", str(corpus), "--labeled_fraction", "0.3",
                      "--local_extra", f"--url {archive.as_uri()} --verify false",
                      "--stop_stage", "5", "--speed_perturb_factors", "", "--token_type", "char", timeout=300)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert (corpus / "TEDLIUM_release2" / "train" / "stm").is_dir()
    data = d / "data"
    lab, unl = read_table(data / "train_labeled" / "utt2spk"), read_table(data / "train_unlabeled" / "utt2spk")
    assert lab and unl and not set(lab.values()) & set(unl.values())
    assert not (data / "train_unlabeled" / "text").exists()
    # stage 3 cut the segments of the .sph talks into one wav per utterance
    dump_test = d / "dump" / "raw" / "test"
    assert not (dump_test / "segments").exists()
    wavs = read_table(dump_test / "wav.scp")
    assert set(wavs) == {"TestTalk_2008-0000150-0000325", "TestTalk_2008-0000350-0000470"}
    nums = read_table(dump_test / "utt2num_samples")
    assert int(nums["TestTalk_2008-0000150-0000325"]) == 28000  # 1.75 s at 16 kHz
    validate_data_dir(dump_test, check_audio=True)
    validate_data_dir(d / "dump" / "raw" / "train_unlabeled", require_text=False, check_audio=True)
    assert (data / "token_list" / "char" / "tokens.txt").is_file()


@pytest.mark.slow
def test_mini_an4_prep_to_scoring(recipe_copy):
    an4 = Path("/work/shared/data/mini_an4/downloads/an4")
    if not an4.is_dir():
        pytest.skip(f"{an4} not available")
    d = recipe_copy("mini_an4")
    proc = run_recipe(d, "--system", "supervised bljust", "--stop_stage", "13", timeout=900)
    assert proc.returncode == 0, output(proc)[-4000:]
    wav = read_table(d / "dump" / "raw" / "test" / "wav.scp")
    assert all(v.startswith(str(an4)) and v.endswith(".sph") for v in wav.values()), "audio must be read in place"
    assert not list((d / "dump").rglob("*.wav"))
    for system in ("supervised", "bljust"):
        e = d / "exp" / f"asr_{system}_raw_char"
        for dset in ("train_dev", "test"):
            hyp = e / "decode_decode_ctc_greedy_valid.cer_ctc.ave" / dset / "text"
            hyp_ids = [line.split()[0] for line in hyp.read_text().splitlines()]
            assert sorted(hyp_ids) == sorted(read_table(d / "dump/raw" / dset / "text"))
        assert "|test|2|" in (e / "RESULTS.md").read_text()
    assert "## bljust: asr_bljust_raw_char" in (d / "RESULTS.md").read_text()
