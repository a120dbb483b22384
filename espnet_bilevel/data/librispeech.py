"""LibriSpeech (OpenSLR resource 12): download parts and build Kaldi data dirs.

Layout after extraction (every part archive unpacks into a shared ``LibriSpeech/`` dir)::

    <root>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <root>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac

Data dirs: ``wav.scp`` ``<utt> <abs path .flac>`` (soundfile decodes flac; no flac binary or
pipe needed), ``text`` (transcripts as given: uppercase words and apostrophes), ``utt2spk`` with
speaker ``<spk>-<chapter>`` as in Kaldi's ``local/data_prep.sh`` (a chapter is one recording
session, which suits per-speaker CMVN), ``spk2utt``. The output dir name replaces ``-`` by ``_``
(``dev-clean`` -> ``dev_clean``) like ESPnet's librispeech recipes.

Checksums: OpenSLR publishes md5 sums on its resource page, but we have no verified copy of
them, so none are listed here (inventing checksums would be worse than none). We do verify
SHA-256 sums: the values below are the ones torchaudio ships for these archives
(``torchaudio/datasets/librispeech.py``, ``_CHECKSUMS``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, TextIO

from espnet_bilevel.data.download import download_and_verify, extract
from espnet_bilevel.data.kaldi_dir import DataDir, DataError, validate_data_dir, write_data_dir

URL_BASE = "https://www.openslr.org/resources/12"
PARTS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise DataError(f"unknown LibriSpeech part '{part}' (known: {', '.join(PARTS)})")


def part_dir(root: Path, part: str) -> Path:
    return Path(root) / "LibriSpeech" / part


def download_librispeech(
    root: Path, parts: Iterable[str], url_base: str = URL_BASE, verify: bool = True, log: Optional[TextIO] = None
) -> List[Path]:
    """Make sure ``<root>/LibriSpeech/<part>`` exists for every part, downloading when missing.

    Archives go to ``<root>/<part>.tar.gz`` and are verified (SHA-256, unless ``verify`` is False,
    e.g. for a mirror or a test archive) before extraction. Returns the part dirs.
    """
    root = Path(root)
    dirs = []
    for part in parts:
        _check_part(part)
        target = part_dir(root, part)
        if target.is_dir():
            print(f"librispeech: {target} exists; skipping download", file=log or sys.stderr)
        else:
            archive = download_and_verify(
                f"{url_base.rstrip('/')}/{part}.tar.gz",
                root,
                sha256=SHA256[part] if verify else None,
                manual_hint=f"(or extract it yourself so that {target} exists)",
                log=log,
            )
            extract(archive, root, log=log)
            if not target.is_dir():
                raise DataError(f"{archive} did not contain LibriSpeech/{part}/; delete it and retry")
        dirs.append(target)
    return dirs


def read_librispeech_part(root: Path, part: str) -> DataDir:
    """Collect the tables of one part from its ``*.trans.txt`` files."""
    _check_part(part)
    base = part_dir(root, part)
    if not base.is_dir():
        raise DataError(
            f"LibriSpeech part directory not found: {base} (download it with --download or point --root "
            f"at the directory that contains LibriSpeech/)"
        )
    data = DataDir(text={})
    trans_files = sorted(base.glob("*/*/*.trans.txt"))
    if not trans_files:
        raise DataError(f"{base}: no <spk>/<chapter>/<spk>-<chapter>.trans.txt files found")
    for trans in trans_files:
        chapter_dir = trans.parent
        spk, chapter = chapter_dir.parent.name, chapter_dir.name
        expected_prefix = f"{spk}-{chapter}-"
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=1)
            utt = fields[0]
            if not utt.startswith(expected_prefix):
                raise DataError(f"{trans}:{lineno}: utterance id '{utt}' does not start with '{expected_prefix}'")
            if len(fields) < 2:
                raise DataError(f"{trans}:{lineno}: empty transcript for '{utt}'")
            flac = chapter_dir / f"{utt}.flac"
            if not flac.is_file():
                raise DataError(f"{trans}:{lineno}: audio file for '{utt}' is missing: {flac}")
            if utt in data.utt2spk:
                raise DataError(f"{trans}:{lineno}: duplicated utterance id '{utt}'")
            data.wav_scp[utt] = str(flac.resolve())
            data.text[utt] = " ".join(fields[1].split())
            data.utt2spk[utt] = f"{spk}-{chapter}"
    return data


def prepare_librispeech(root: Path, parts: Iterable[str], out_dir: Path, check_audio: bool = False) -> Dict[str, Path]:
    """Write ``<out_dir>/<part with _>`` for every part; returns ``{part: data dir}``.

    ``check_audio`` opens every flac header (slow for the 960 h training set, so off by default).
    """
    written = {}
    for part in parts:
        data = read_librispeech_part(Path(root), part)
        target = write_data_dir(Path(out_dir) / part.replace("-", "_"), data)
        validate_data_dir(target, check_audio=check_audio)
        written[part] = target
    return written
