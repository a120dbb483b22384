from __future__ import annotations

from pathlib import Path

import pytest
from data_test_utils import write_audio, write_lines

from espnet_bilevel.data.kaldi_dir import (
    DataDir,
    DataError,
    check_charset,
    combine_data_dirs,
    fix_data_dir,
    read_data_dir,
    read_table,
    split_scp,
    subset_data_dir,
    utt2spk_to_spk2utt,
    validate_data_dir,
    write_data_dir,
)


def _lines(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


def _replace_line(path: Path, index: int, new: str) -> None:
    lines = _lines(path)
    lines[index] = new
    write_lines(path, lines)


def _wav_of(d: Path, utt: str) -> Path:
    return Path(read_table(d / "wav.scp")[utt])


def test_utt2spk_to_spk2utt_sorted():
    spk2utt = utt2spk_to_spk2utt({"b-2": "b", "a-1": "a", "b-1": "b"})
    assert list(spk2utt.items()) == [("a", ["a-1"]), ("b", ["b-1", "b-2"])]


def test_good_dir_validates_and_roundtrips(good_dir, tmp_path):
    data = validate_data_dir(good_dir)
    assert data.utt_ids == ["spkA-u1", "spkA-u2", "spkB-u3"]
    out = write_data_dir(tmp_path / "copy", data)
    assert not (tmp_path / "copy.tmp").exists()
    assert _lines(out / "spk2utt") == ["spkA spkA-u1 spkA-u2", "spkB spkB-u3"]
    assert read_data_dir(out).text == data.text


def _missing_file(d):
    (d / "text").unlink()


def _duplicate(d):
    write_lines(d / "utt2spk", _lines(d / "utt2spk") + ["spkB-u3 spkB"])


def _mismatch(d):
    write_lines(d / "text", _lines(d / "text")[:2])


def _empty_transcript(d):
    _replace_line(d / "text", 1, "spkA-u2")


def _no_audio(d):
    _replace_line(d / "wav.scp", 0, f"spkA-u1 {d.parent / 'nowhere' / 'x.wav'}")


def _corrupt_audio(d):
    _wav_of(d, "spkA-u2").write_bytes(b"RIFF\x00\x00this is not a wav file at all" * 3)


def _zero_bytes(d):
    _wav_of(d, "spkA-u1").write_bytes(b"")


def _zero_samples(d):
    write_audio(_wav_of(d, "spkA-u1"), seconds=0.0)


def _wrong_rate(d):
    write_audio(_wav_of(d, "spkB-u3"), fs=8000)


def _stereo(d):
    write_audio(_wav_of(d, "spkA-u2"), channels=2)


def _unsorted(d):
    for name in ("wav.scp", "text", "utt2spk"):
        write_lines(d / name, list(reversed(_lines(d / name))))


def _pipe(d):
    _replace_line(d / "wav.scp", 2, "spkB-u3 sph2pipe -f wav -p x.sph |")


def _bad_spk2utt(d):
    write_lines(d / "spk2utt", ["spkA spkA-u1", "spkB spkB-u3"])


BAD_CASES = {
    "missing_file": (_missing_file, ["'text' is missing"]),
    "duplicate_id": (_duplicate, ["utt2spk:4", "duplicated id 'spkB-u3'", "line 3"]),
    "mismatched_ids": (_mismatch, ["ids of text (2) and utt2spk (3) differ", "only in utt2spk: spkB-u3"]),
    "empty_transcript": (_empty_transcript, ["text:2", "empty transcript", "spkA-u2"]),
    "nonexistent_audio": (_no_audio, ["wav.scp:1", "does not exist", "x.wav"]),
    "corrupt_audio": (_corrupt_audio, ["wav.scp:2", "cannot read audio file", "spkA-u2.wav"]),
    "zero_length_file": (_zero_bytes, ["wav.scp:1", "empty (zero bytes)", "spkA-u1.wav"]),
    "zero_samples": (_zero_samples, ["wav.scp:1", "zero samples", "spkA-u1.wav"]),
    "wrong_sample_rate": (_wrong_rate, ["wav.scp:3", "8000 Hz, expected 16000 Hz", "spkB-u3.wav"]),
    "stereo": (_stereo, ["wav.scp:2", "2 channels", "spkA-u2.wav"]),
    "unsorted": (_unsorted, ["wav.scp:2", "not sorted"]),
    "pipe": (_pipe, ["wav.scp:3", "pipes are not supported"]),
    "bad_spk2utt": (_bad_spk2utt, ["spk2utt:1", "does not match utt2spk"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_validate_bad_input(good_dir, case):
    mutate, expected = BAD_CASES[case]
    mutate(good_dir)
    with pytest.raises(DataError) as err:
        validate_data_dir(good_dir)
    message = str(err.value)
    for fragment in expected:
        assert fragment in message, message
    assert str(good_dir) in message or good_dir.parent.name in message


def test_validate_unknown_characters(good_dir, tmp_path):
    tokens = write_lines(tmp_path / "tokens.txt", ["<blank>", "<unk>", "<space>"] + list("HELOWRDGYA") + ["<sos/eos>"])
    with pytest.raises(DataError) as err:
        validate_data_dir(good_dir, token_list=tokens)
    message = str(err.value)
    assert "text:3" in message and "spkB-u3" in message and "'S'" in message and "tokens.txt" in message
    problems = check_charset(good_dir / "text", tokens, raise_error=False)
    assert problems == [(3, "spkB-u3", ["S"])]


def test_space_needs_space_token(good_dir, tmp_path):
    tokens = write_lines(tmp_path / "tokens.txt", list("HELOWRDGYAS"))
    problems = check_charset(good_dir / "text", tokens, raise_error=False)
    assert problems == [(1, "spkA-u1", ["<space>"]), (2, "spkA-u2", ["<space>"])]


def test_no_text_and_no_audio_options(good_dir):
    (good_dir / "text").unlink()
    _no_audio(good_dir)
    validate_data_dir(good_dir, require_text=False, check_audio=False)


def test_fix_data_dir_sorts_and_drops(good_dir):
    _unsorted(good_dir)
    write_lines(good_dir / "utt2spk", _lines(good_dir / "utt2spk") + ["spkC-u9 spkC"])
    summary = fix_data_dir(good_dir)
    assert summary == {"kept": 3, "dropped": 1}
    validate_data_dir(good_dir)
    assert _lines(good_dir / "spk2utt") == ["spkA spkA-u1 spkA-u2", "spkB spkB-u3"]


def test_fix_refuses_duplicates(good_dir):
    _duplicate(good_dir)
    with pytest.raises(DataError, match="duplicated"):
        fix_data_dir(good_dir)


def test_subset_and_combine(good_dir, tmp_path):
    a = subset_data_dir(good_dir, tmp_path / "a", ["spkA-u1", "spkA-u2"])
    b = subset_data_dir(good_dir, tmp_path / "b", ["spkB-u3"])
    assert _lines(a / "spk2utt") == ["spkA spkA-u1 spkA-u2"]
    validate_data_dir(a)
    combined = combine_data_dirs(tmp_path / "ab", [b, a])
    validate_data_dir(combined)
    assert _lines(combined / "text") == _lines(good_dir / "text")
    with pytest.raises(DataError, match="occurs in both"):
        combine_data_dirs(tmp_path / "aa", [a, a])
    with pytest.raises(DataError, match="not in utt2spk: nope"):
        subset_data_dir(good_dir, tmp_path / "c", ["nope"])


def test_combine_mixes_segmented_and_whole_files(good_dir, tmp_path):
    seg = tmp_path / "seg"
    data = DataDir(
        wav_scp={"rec1": str(write_audio(tmp_path / "rec1.wav", seconds=2.0))},
        text={"spkZ-a": "ONE", "spkZ-b": "TWO"},
        utt2spk={"spkZ-a": "spkZ", "spkZ-b": "spkZ"},
        segments={"spkZ-a": ("rec1", 0.0, 1.0), "spkZ-b": ("rec1", 1.0, 1.9)},
    )
    write_data_dir(seg, data)
    validate_data_dir(seg)
    out = combine_data_dirs(tmp_path / "mixed", [good_dir, seg])
    validate_data_dir(out)
    segments = read_table(out / "segments")
    assert segments["spkA-u1"] == "spkA-u1 0.00 0.20" and segments["spkZ-b"] == "rec1 1.00 1.90"


def test_segments_checks(tmp_path):
    d = tmp_path / "seg"
    data = DataDir(
        wav_scp={"rec1": str(write_audio(tmp_path / "rec1.wav", seconds=1.0))},
        text={"s-a": "ONE"},
        utt2spk={"s-a": "s"},
        segments={"s-a": ("rec1", 0.0, 3.0)},
    )
    write_data_dir(d, data)
    with pytest.raises(DataError, match="ends at 3.00 s but recording 'rec1' is only 1.00 s"):
        validate_data_dir(d)
    write_lines(d / "segments", ["s-a rec2 0.0 0.5"])
    with pytest.raises(DataError, match="not in wav.scp: rec2"):
        validate_data_dir(d, check_audio=False)
    write_lines(d / "segments", ["s-a rec1 0.5 0.2"])
    with pytest.raises(DataError, match=r"segments:1: segment 's-a' has start 0.5 and end 0.2"):
        validate_data_dir(d, check_audio=False)


def test_split_scp(good_dir, tmp_path):
    parts = split_scp(good_dir / "wav.scp", 2, tmp_path / "split")
    assert [p.name for p in parts] == ["wav.scp.1", "wav.scp.2"]
    assert [len(_lines(p)) for p in parts] == [2, 1]
    assert sum((_lines(p) for p in parts), []) == _lines(good_dir / "wav.scp")
    assert split_scp(good_dir / "wav.scp", 1)[0] == good_dir / "split1" / "wav.scp.1"
    with pytest.raises(DataError, match="cannot split 3 lines into 4 parts"):
        split_scp(good_dir / "wav.scp", 4)


def test_write_is_atomic_and_replaces(good_dir, tmp_path):
    data = read_data_dir(good_dir)
    target = tmp_path / "out"
    write_data_dir(target, data)
    data.utt2spk = {"spkA-u1": "spkA"}
    data.text = {"spkA-u1": "HELLO WORLD"}
    data.wav_scp = {"spkA-u1": data.wav_scp["spkA-u1"]}
    write_data_dir(target, data)
    assert _lines(target / "utt2spk") == ["spkA-u1 spkA"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert leftovers == []
