from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from data_test_utils import write_audio, write_lines

from espnet_bilevel.data.kaldi_dir import DataError, read_table, validate_data_dir
from espnet_bilevel.data.tedlium2 import (
    download_tedlium2,
    normalize_transcript,
    parse_stm_file,
    prepare_tedlium2,
    split_labeled_unlabeled,
)

TALKS = {
    "train": {"AlphaTalk_2010": 12.0, "BetaTalk_2011": 8.0, "GammaTalk_2012": 10.0, "DeltaTalk_2013": 6.0},
    "dev": {"DevTalk_2009": 5.0},
    "test": {"TestTalk_2008": 5.0},
}


def make_fake_tedlium2(root: Path) -> Path:
    base = root / "TEDLIUM_release2"
    for set_name, talks in TALKS.items():
        for talk, seconds in talks.items():
            write_audio(base / set_name / "sph" / f"{talk}.sph", seconds=seconds, fmt="NIST")
            lines = [
                f"{talk} 1 {talk} 0.00 1.50 <o,f0,male> ignore_time_segment_in_scoring",
                f"{talk} 1 {talk} 1.50 3.25 <o,f0,male> so it 's a {{NOISE}} good(2) idea <sil> (utt-{talk})",
                f"{talk} 1 {talk} 3.25 3.50 <o,f0,female> {{BREATH}} <sil>",
                f"{talk} 1 {talk} 3.50 {seconds - 0.3:.2f} <o,f0,male> we 're here",
                f"{talk} 1 {talk} 3.50 {seconds - 0.3:.2f} <o,f0,male> we 're here",
            ]
            (base / set_name / "stm").mkdir(parents=True, exist_ok=True)
            write_lines(base / set_name / "stm" / f"{talk}.stm", lines)
    return root


def test_normalize_transcript():
    words = "so it 's a {NOISE} good(2) idea <sil> <unk> (utt-x)".split()
    assert normalize_transcript(words) == "so it's a good idea"
    assert normalize_transcript(words, keep_noise_tags=True) == "so it's a [NOISE] good idea"
    assert normalize_transcript(["{BREATH}", "<sil>"]) == ""


def test_parse_stm_skips_ignored_empty_and_duplicates(tmp_path):
    root = make_fake_tedlium2(tmp_path)
    segs = parse_stm_file(root / "TEDLIUM_release2/dev/stm/DevTalk_2009.stm")
    assert segs == [
        ("DevTalk_2009", "DevTalk_2009", 1.5, 3.25, "so it's a good idea"),
        ("DevTalk_2009", "DevTalk_2009", 3.5, 4.7, "we're here"),
    ]


def test_prepare_fake_tedlium2(tmp_path):
    root = make_fake_tedlium2(tmp_path / "corpus")
    written = prepare_tedlium2(root, tmp_path / "data", check_audio=True)
    assert set(written) == {"train", "dev", "test"}
    dev = written["dev"]
    assert read_table(dev / "text") == {
        "DevTalk_2009-0000150-0000325": "so it's a good idea",
        "DevTalk_2009-0000350-0000470": "we're here",
    }
    assert read_table(dev / "segments")["DevTalk_2009-0000150-0000325"] == "DevTalk_2009 1.50 3.25"
    assert read_table(dev / "wav.scp")["DevTalk_2009"].endswith("TEDLIUM_release2/dev/sph/DevTalk_2009.sph")
    assert read_table(dev / "utt2spk")["DevTalk_2009-0000350-0000470"] == "DevTalk_2009"
    train = validate_data_dir(written["train"], check_audio=True)
    assert len(train.utt2spk) == 8 and len(train.wav_scp) == 4


def test_missing_sph_and_missing_dir(tmp_path):
    root = make_fake_tedlium2(tmp_path / "corpus")
    (root / "TEDLIUM_release2/test/sph/TestTalk_2008.sph").unlink()
    with pytest.raises(DataError, match=r"TestTalk_2008.stm: audio for talk 'TestTalk_2008' is missing"):
        prepare_tedlium2(root, tmp_path / "data", sets=["test"])
    with pytest.raises(DataError, match="TED-LIUM 2 directory not found"):
        prepare_tedlium2(tmp_path / "nothing", tmp_path / "data")


def test_split_labeled_unlabeled(tmp_path):
    root = make_fake_tedlium2(tmp_path / "corpus")
    train = prepare_tedlium2(root, tmp_path / "data", sets=["train"])["train"]
    stats = split_labeled_unlabeled(train, tmp_path / "data/lab", tmp_path / "data/unl", n_labeled_hours=8 / 3600, seed=0)
    lab = read_table(tmp_path / "data/lab/utt2spk")
    unl = read_table(tmp_path / "data/unl/utt2spk")
    assert not set(lab.values()) & set(unl.values())
    assert len(lab) + len(unl) == 8
    assert stats["labeled_speakers"] + stats["unlabeled_speakers"] == 4
    assert stats["labeled_hours"] * 3600 >= 8 - 1e-6
    validate_data_dir(tmp_path / "data/lab", check_audio=True)
    validate_data_dir(tmp_path / "data/unl", check_audio=True)
    again = split_labeled_unlabeled(train, tmp_path / "data/lab2", tmp_path / "data/unl2", n_labeled_hours=8 / 3600, seed=0)
    assert again == stats and read_table(tmp_path / "data/lab2/utt2spk") == lab
    by_fraction = split_labeled_unlabeled(train, tmp_path / "data/l3", tmp_path / "data/u3", fraction=0.25, seed=1)
    assert by_fraction["labeled_speakers"] >= 1 and by_fraction["unlabeled_speakers"] >= 1
    with pytest.raises(DataError, match="not below the total"):
        split_labeled_unlabeled(train, tmp_path / "data/l4", tmp_path / "data/u4", n_labeled_hours=100.0)


def test_download_from_local_archive(tmp_path):
    built = make_fake_tedlium2(tmp_path / "build")
    archive = tmp_path / "mirror" / "TEDLIUM_release2.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(built / "TEDLIUM_release2", arcname="TEDLIUM_release2")
    root = tmp_path / "root"
    with pytest.raises(DataError, match="corrupt or truncated: sha256"):
        download_tedlium2(root, url=archive.as_uri(), log=io.StringIO())
    target = download_tedlium2(root, url=archive.as_uri(), verify=False, log=io.StringIO())
    assert (target / "train" / "stm" / "AlphaTalk_2010.stm").is_file()


def test_bad_stm_line_names_file_and_line(tmp_path):
    stm = write_lines(tmp_path / "x.stm", ["T 1 T 0.0 1.0 <o,f0,male> ok", "T 1 T zero 1.0 <o,f0,male> bad"])
    with pytest.raises(DataError, match=r"x.stm:2: start/end must be numbers"):
        parse_stm_file(stm)
