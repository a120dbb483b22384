"""Balanced, nested labeled subsets for label-budget curves (espnet_bilevel.data.label_budget)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from data_test_utils import write_lines
from espnet_bilevel.bin import subset_data_dir
from espnet_bilevel.data.kaldi_dir import DataError, read_data_dir
from espnet_bilevel.data.label_budget import balanced_utt_ids, speaker_prefix


def _utt2spk():
    # three domains of unequal size: 30 / 20 / 10 utterances
    table = {}
    for dom, n in (("usmid", 30), ("gbmid", 20), ("nycfast", 10)):
        for i in range(n):
            table[f"{dom}_spk{i % 2}-{i:03d}"] = f"{dom}_spk{i % 2}"
    return table


def test_balanced_over_groups_while_they_last():
    u2s = _utt2spk()
    ids = balanced_utt_ids(u2s, 24, seed=0)
    assert Counter(speaker_prefix(u2s[u]) for u in ids) == {"usmid": 8, "gbmid": 8, "nycfast": 8}
    # nycfast runs out at 10: the remaining budget goes to the other groups
    ids = balanced_utt_ids(u2s, 45, seed=0)
    assert Counter(speaker_prefix(u2s[u]) for u in ids) == {"gbmid": 18, "usmid": 17, "nycfast": 10}  # groups in sorted order


def test_smaller_budgets_are_nested_and_seeded():
    u2s = _utt2spk()
    sets = [set(balanced_utt_ids(u2s, n, seed=3)) for n in (6, 12, 30, 60)]
    assert all(a < b for a, b in zip(sets, sets[1:]))
    assert sets[-1] == set(u2s)
    assert balanced_utt_ids(u2s, 12, seed=3) == balanced_utt_ids(u2s, 12, seed=3)
    assert balanced_utt_ids(u2s, 12, seed=3) != balanced_utt_ids(u2s, 12, seed=4)


@pytest.mark.parametrize("n", [0, -1, 61])
def test_bad_budget(n):
    with pytest.raises(DataError, match="label budget"):
        balanced_utt_ids(_utt2spk(), n)


def _data_dir(root: Path) -> Path:
    d = root / "train"
    d.mkdir()
    u2s = _utt2spk()
    ids = sorted(u2s)
    write_lines(d / "wav.scp", [f"{u} /nonexistent/{u}.wav" for u in ids])
    write_lines(d / "text", [f"{u} HELLO {i}" for i, u in enumerate(ids)])
    write_lines(d / "utt2spk", [f"{u} {u2s[u]}" for u in ids])
    return d


def test_cli_writes_subset_dir(tmp_path, capsys):
    src = _data_dir(tmp_path)
    dst = tmp_path / "train_n12"
    assert subset_data_dir.main([str(src), str(dst), "--num_utts", "12"]) == 0
    out = read_data_dir(dst)
    assert len(out.utt_ids) == 12
    assert set(out.text) == set(out.wav_scp) == set(out.utt2spk)
    assert "usmid 4" in capsys.readouterr().out


def test_cli_error_names_source_dir(tmp_path, capsys):
    src = _data_dir(tmp_path)
    rc = subset_data_dir.run_cli(subset_data_dir.main, [str(src), str(tmp_path / "x"), "--num_utts", "500"])
    assert rc == 1
    err = capsys.readouterr().err
    assert str(src) in err and "exceeds" in err
    assert not (tmp_path / "x").exists()
