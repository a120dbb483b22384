from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from data_test_utils import write_audio, write_lines

from espnet_bilevel.data.kaldi_dir import DataError, read_table, validate_data_dir
from espnet_bilevel.data.librispeech import download_librispeech, prepare_librispeech

# speaker -> chapter -> transcripts
FAKE = {
    "dev-clean": {"84": {"121123": ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"]}, "251": {"136532": ["I'M HERE"]}},
    "test-clean": {"1089": {"134686": ["HE HOPED THERE WOULD BE STEW"]}},
}


def make_fake_librispeech(root: Path, parts=("dev-clean", "test-clean")) -> Path:
    for part in parts:
        for spk, chapters in FAKE[part].items():
            for chapter, sentences in chapters.items():
                d = root / "LibriSpeech" / part / spk / chapter
                lines = []
                for i, sentence in enumerate(sentences):
                    utt = f"{spk}-{chapter}-{i:04d}"
                    write_audio(d / f"{utt}.flac", fmt="FLAC")
                    lines.append(f"{utt} {sentence}")
                write_lines(d / f"{spk}-{chapter}.trans.txt", lines)
    return root


def test_prepare_fake_librispeech(tmp_path):
    root = make_fake_librispeech(tmp_path / "corpus")
    written = prepare_librispeech(root, ["dev-clean", "test-clean"], tmp_path / "data", check_audio=True)
    dev = written["dev-clean"]
    assert dev == tmp_path / "data" / "dev_clean"
    assert read_table(dev / "text") == {
        "251-136532-0000": "I'M HERE",
        "84-121123-0000": "GO DO YOU HEAR",
        "84-121123-0001": "BUT IN LESS THAN FIVE MINUTES",
    }
    assert read_table(dev / "utt2spk")["84-121123-0001"] == "84-121123"
    assert read_table(dev / "wav.scp")["251-136532-0000"].endswith("LibriSpeech/dev-clean/251/136532/251-136532-0000.flac")
    assert (dev / "spk2utt").read_text().splitlines() == ["251-136532 251-136532-0000",
                                                          "84-121123 84-121123-0000 84-121123-0001"]
    validate_data_dir(written["test-clean"], check_audio=True)


def test_missing_flac_and_missing_part(tmp_path):
    root = make_fake_librispeech(tmp_path / "corpus", parts=("dev-clean",))
    (root / "LibriSpeech/dev-clean/84/121123/84-121123-0001.flac").unlink()
    with pytest.raises(DataError) as err:
        prepare_librispeech(root, ["dev-clean"], tmp_path / "data")
    assert "84-121123.trans.txt:2: audio file for '84-121123-0001' is missing" in str(err.value)
    with pytest.raises(DataError, match=r"LibriSpeech part directory not found: .*LibriSpeech/test-other"):
        prepare_librispeech(root, ["test-other"], tmp_path / "data")
    with pytest.raises(DataError, match="unknown LibriSpeech part 'dev-cleen'"):
        prepare_librispeech(root, ["dev-cleen"], tmp_path / "data")


def _mirror(tmp_path: Path) -> Path:
    """A local 'OpenSLR mirror' holding dev-clean.tar.gz built from the fake corpus."""
    built = make_fake_librispeech(tmp_path / "build", parts=("dev-clean",))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "dev-clean.tar.gz", "w:gz") as tar:
        tar.add(built / "LibriSpeech", arcname="LibriSpeech")
    return mirror


def test_download_from_local_mirror(tmp_path):
    mirror = _mirror(tmp_path)
    root = tmp_path / "root"
    log = io.StringIO()
    (part,) = download_librispeech(root, ["dev-clean"], url_base=mirror.as_uri(), verify=False, log=log)
    assert part == root / "LibriSpeech" / "dev-clean" and part.is_dir()
    written = prepare_librispeech(root, ["dev-clean"], tmp_path / "data", check_audio=True)
    assert len(read_table(written["dev-clean"] / "text")) == 3
    # part dir exists: no download attempted, even from an unreachable URL
    download_librispeech(root, ["dev-clean"], url_base="http://127.0.0.1:9", log=log)
    assert "exists; skipping download" in log.getvalue()


def test_download_checksum_mismatch(tmp_path):
    # Our fake archive cannot match the official SHA-256: verification must fail clearly.
    mirror = _mirror(tmp_path)
    with pytest.raises(DataError, match=r"dev-clean.tar.gz.part is corrupt or truncated: sha256 .* delete"):
        download_librispeech(tmp_path / "root", ["dev-clean"], url_base=mirror.as_uri(), log=io.StringIO())
    assert not (tmp_path / "root" / "LibriSpeech").exists()
