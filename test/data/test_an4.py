from __future__ import annotations

from pathlib import Path

import pytest
from data_test_utils import write_audio, write_lines

from espnet_bilevel.data.an4 import an4_utt_id, parse_transcription_line, prepare_an4
from espnet_bilevel.data.kaldi_dir import DataError, read_table, validate_data_dir

MINI_AN4 = Path("/work/shared/data/mini_an4/downloads/an4")


def test_parse_transcription_line():
    p = Path("x.transcription")
    assert parse_transcription_line("<s> YES </s> (an251-fash-b)", p, 1) == ("an251-fash-b", "YES")
    assert parse_transcription_line("ELEVEN TWENTY (cen8-fcaw-b)", p, 1) == ("cen8-fcaw-b", "ELEVEN TWENTY")
    with pytest.raises(DataError, match=r"x.transcription:3: expected 'WORDS \(fileid\)'"):
        parse_transcription_line("NO ID HERE", p, 3)
    with pytest.raises(DataError, match="x.transcription:4: empty transcript"):
        parse_transcription_line("<s> </s> (an1-abcd-b)", p, 4)


def test_utt_id_moves_speaker_first():
    assert an4_utt_id("an251-fash-b", "fash") == "fash-an251-b"
    assert an4_utt_id("cen8-mmxg-b", "mmxg") == "mmxg-cen8-b"


@pytest.mark.skipif(not MINI_AN4.is_dir(), reason="mini_an4 not available")
def test_mini_an4(tmp_path):
    written = prepare_an4(MINI_AN4, tmp_path / "data")
    assert set(written) == {"train", "test", "train_dev", "train_nodev"}
    train = read_table(tmp_path / "data" / "train" / "text")
    assert train == {
        "fash-an251-b": "YES",
        "fash-an253-b": "GO",
        "fbbh-cen8-b": "MARCH THIRD NINETEEN TWENTY EIGHT",
        "mwhw-an152-b": "START",
        "mwhw-cen8-b": "ELEVEN SEVENTEEN FIFTY ONE",
    }
    test = read_table(tmp_path / "data" / "test" / "text")
    assert test["mmxg-cen8-b"] == "OCTOBER TWENTY FOUR NINETEEN SEVENTY"
    wav = read_table(tmp_path / "data" / "train" / "wav.scp")
    assert wav["fash-an251-b"] == str((MINI_AN4 / "wav/an4_clstk/fash/an251-fash-b.sph").resolve())
    assert read_table(tmp_path / "data" / "train" / "utt2spk")["mwhw-cen8-b"] == "mwhw"
    assert list(read_table(tmp_path / "data" / "train_dev" / "utt2spk")) == ["fash-an251-b"]
    assert len(read_table(tmp_path / "data" / "train_nodev" / "utt2spk")) == 4
    for d in written.values():
        validate_data_dir(d, check_audio=True)
    # nothing copied next to the data dirs
    assert not list((tmp_path / "data").rglob("*.sph"))


def _fake_an4(root: Path) -> Path:
    an4 = root / "an4"
    (an4 / "etc").mkdir(parents=True)
    write_lines(an4 / "etc" / "an4_train.transcription",
                ["<s> ONE TWO </s> (an1-spka-b)", "<s> THREE </s> (an2-spkb-b)"])
    write_lines(an4 / "etc" / "an4_train.fileids", ["an4_clstk/spka/an1-spka-b", "an4_clstk/spkb/an2-spkb-b"])
    write_lines(an4 / "etc" / "an4_test.transcription", ["FOUR (an3-spkc-b)"])
    write_lines(an4 / "etc" / "an4_test.fileids", ["an4test_clstk/spkc/an3-spkc-b"])
    for rel in ("an4_clstk/spka/an1-spka-b", "an4_clstk/spkb/an2-spkb-b", "an4test_clstk/spkc/an3-spkc-b"):
        write_audio(an4 / "wav" / f"{rel}.sph", fmt="NIST")
    return an4


def test_fake_an4_and_errors(tmp_path):
    an4 = _fake_an4(tmp_path)
    prepare_an4(an4, tmp_path / "data")
    assert read_table(tmp_path / "data" / "test" / "text") == {"spkc-an3-b": "FOUR"}
    (an4 / "wav" / "an4_clstk" / "spkb" / "an2-spkb-b.sph").unlink()
    with pytest.raises(DataError, match=r"an4_train.transcription:2: audio for 'an2-spkb-b' not found"):
        prepare_an4(an4, tmp_path / "data2")
    with pytest.raises(DataError, match="not an AN4 tree"):
        prepare_an4(tmp_path / "nothing", tmp_path / "data3")
