from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from espnet_bilevel.data import synth_corpus
from espnet_bilevel.data.kaldi_dir import DataError, read_table, validate_data_dir
from espnet_bilevel.data.synth_corpus import (
    DOMAINS,
    LABELED_DOMAINS,
    SPLITS,
    VOCABULARY,
    plan_corpus,
    synthesize_corpus,
)

needs_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="espeak-ng/sox not installed"
)
TINY = {"train_labeled": 4, "train_unlabeled": 8, "dev": 2, "test": 2}


def test_vocabulary_size():
    assert 35 <= len(VOCABULARY) <= 40


def test_plan_default_shape():
    plan = plan_corpus(seed=0)
    assert {s: len(u) for s, u in plan.items()} == {"train_labeled": 60, "train_unlabeled": 600, "dev": 40, "test": 60}
    all_domains = {d.name for d in DOMAINS}
    assert {u.domain for u in plan["train_labeled"]} == set(LABELED_DOMAINS)
    for split in ("train_unlabeled", "dev", "test"):
        assert {u.domain for u in plan[split]} == all_domains
    unseen = all_domains - set(LABELED_DOMAINS)
    assert any(u.domain in unseen for u in plan["test"])
    # no sentence crosses splits (or repeats inside one)
    texts = [u.text for s in SPLITS for u in plan[s]]
    assert len(texts) == len(set(texts))
    ids = [u.utt_id for s in SPLITS for u in plan[s]]
    assert len(ids) == len(set(ids))
    for split in SPLITS:
        for u in plan[split]:
            assert u.utt_id.startswith(u.speaker + "-")
            assert set(u.text.split()) <= set(VOCABULARY)
            domain = next(d for d in DOMAINS if d.name == u.domain)
            assert domain.speed[0] <= u.speed <= domain.speed[1]
            assert domain.pitch[0] <= u.pitch <= domain.pitch[1]


def test_plan_is_deterministic_and_seed_dependent():
    assert plan_corpus(seed=7, sizes=TINY) == plan_corpus(seed=7, sizes=TINY)
    assert plan_corpus(seed=7, sizes=TINY) != plan_corpus(seed=8, sizes=TINY)


def test_plan_rejects_bad_sizes():
    with pytest.raises(DataError, match="at least 1"):
        plan_corpus(sizes={"dev": 0})


def test_extra_unlabeled_keeps_the_other_splits():
    base = plan_corpus(seed=5, sizes=TINY)
    more = plan_corpus(seed=5, sizes=TINY, extra_unlabeled=7)
    # the corpus without the extra utterances is unchanged, utterance for utterance
    for split in SPLITS:
        assert more[split][: len(base[split])] == base[split]
    extra = more["train_unlabeled"][len(base["train_unlabeled"]) :]
    assert len(extra) == 7 and all(u.split == "train_unlabeled" for u in extra)
    # new sentences and ids only, drawn over every domain
    old_texts = {u.text for s in SPLITS for u in base[s]}
    assert not {u.text for u in extra} & old_texts and len({u.text for u in extra}) == 7
    all_ids = [u.utt_id for s in SPLITS for u in more[s]]
    assert len(all_ids) == len(set(all_ids))
    assert {u.domain for u in extra} == {d.name for d in DOMAINS}
    # deterministic, and seed-dependent
    assert plan_corpus(seed=5, sizes=TINY, extra_unlabeled=7) == more
    assert plan_corpus(seed=6, sizes=TINY, extra_unlabeled=7)["train_unlabeled"][-7:] != extra
    with pytest.raises(DataError, match="extra_unlabeled must be >= 0"):
        plan_corpus(seed=5, sizes=TINY, extra_unlabeled=-1)


def test_extra_unlabeled_changes_the_args_hash_only_when_used():
    sizes = dict(synth_corpus.DEFAULT_SIZES)
    assert synth_corpus.args_hash(0, sizes, 0) == synth_corpus.args_hash(0, sizes)
    assert synth_corpus.args_hash(0, sizes, 10) != synth_corpus.args_hash(0, sizes)


def test_missing_tools_message(monkeypatch, tmp_path):
    monkeypatch.setattr(synth_corpus.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"espeak-ng and sox not found.*apt-get install espeak-ng sox"):
        synthesize_corpus(tmp_path / "c", sizes=TINY, log=io.StringIO())


@needs_tools
def test_tiny_corpus_end_to_end(tmp_path):
    log = io.StringIO()
    info = synthesize_corpus(tmp_path / "c1", seed=3, sizes=TINY, jobs=2, progress_every=5, log=log)
    assert "5/16 utterances" in log.getvalue()
    texts = {}
    for split, n in TINY.items():
        d = tmp_path / "c1" / "data" / split
        data = validate_data_dir(d, check_audio=True, expected_fs=16000)
        assert len(data.utt2spk) == n
        texts[split] = set(data.text.values())
        assert info["splits"][split]["n_utts"] == n
    assert sum(len(t) for t in texts.values()) == len(set().union(*texts.values()))
    saved = json.loads((tmp_path / "c1" / "corpus_info.json").read_text())
    assert set(saved["splits"]["train_labeled"]["domains"]) <= set(LABELED_DOMAINS)
    assert saved["unseen_in_labeled"] and not set(saved["unseen_in_labeled"]) & set(LABELED_DOMAINS)

    # rerun with identical arguments: nothing is touched
    wav = Path(read_table(tmp_path / "c1" / "data" / "dev" / "wav.scp").popitem()[1])
    mtime = wav.stat().st_mtime_ns
    log2 = io.StringIO()
    synthesize_corpus(tmp_path / "c1", seed=3, sizes=TINY, log=log2)
    assert "already complete" in log2.getvalue() and wav.stat().st_mtime_ns == mtime

    # other arguments on a finished corpus: clear error
    with pytest.raises(DataError, match="different arguments"):
        synthesize_corpus(tmp_path / "c1", seed=4, sizes=TINY, log=io.StringIO())

    # same seed elsewhere: same ids, texts and audio bytes
    synthesize_corpus(tmp_path / "c2", seed=3, sizes=TINY, jobs=1, log=io.StringIO())
    for split in TINY:
        t1 = read_table(tmp_path / "c1" / "data" / split / "text")
        t2 = read_table(tmp_path / "c2" / "data" / split / "text")
        assert t1 == t2
        for utt in t1:
            a = tmp_path / "c1" / "wav" / split / f"{utt}.wav"
            b = tmp_path / "c2" / "wav" / split / f"{utt}.wav"
            assert a.read_bytes() == b.read_bytes()


@needs_tools
def test_interrupted_run_resumes(tmp_path):
    out = tmp_path / "c"
    synthesize_corpus(out, seed=1, sizes=TINY, log=io.StringIO())
    # simulate a crash before the final steps: drop the marker, the data dirs and one wav
    (out / ".done").unlink()
    (out / ".in_progress").write_text(synth_corpus.args_hash(1, {**synth_corpus.DEFAULT_SIZES, **TINY}) + "\n")
    shutil.rmtree(out / "data")
    victim = next((out / "wav" / "test").iterdir())
    victim.unlink()
    log = io.StringIO()
    synthesize_corpus(out, seed=1, sizes=TINY, log=log)
    assert "synthesizing 1 of 16" in log.getvalue()
    assert victim.is_file() and (out / ".done").is_file()
