"""Kaldi data dirs from a CMU AN4 tree (``downloads/an4``) without copying or converting audio.

Input layout (as in ESPnet's ``mini_an4`` downloads and the full AN4 release)::

    an4/etc/an4_{train,test}.transcription   "<s> WORDS </s> (fileid)" or "WORDS (fileid)"
    an4/etc/an4_{train,test}.fileids         "an4_clstk/<spk>/<fileid>" (relative to an4/wav)
    an4/wav/<dir>/<spk>/<fileid>.sph          NIST SPHERE, 16 kHz, 16-bit, uncompressed

Output: ``<out>/{train,train_nodev,train_dev,test}`` with ``wav.scp`` pointing straight at the
``.sph`` files (soundfile reads NIST SPHERE, so no sph2pipe), ``text``, ``utt2spk``, ``spk2utt``.
Utterance ids follow ESPnet's AN4 recipe: fileid ``an251-fash-b`` -> ``fash-an251-b`` (speaker
first, so Kaldi sorting groups speakers); the speaker is the directory the file lives in.
``train_dev`` is the first ``n_dev`` utterances of ``train`` in sort order and ``train_nodev`` the
rest, as ``utils/subset_data_dir.sh --first/--last`` does in ESPnet's recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_bilevel.data.kaldi_dir import (
    DataDir,
    DataError,
    kaldi_sort_key,
    subset_data_dir,
    validate_data_dir,
    write_data_dir,
)

AN4_SETS = {"train": "an4_train", "test": "an4_test"}


def parse_transcription_line(line: str, path: Path, lineno: int) -> Tuple[str, str]:
    """Split a Sphinx transcription line into ``(fileid, words)``; drops ``<s>``/``</s>``."""
    line = line.strip()
    if not line.endswith(")") or "(" not in line:
        raise DataError(f"{path}:{lineno}: expected 'WORDS (fileid)', got '{line}'")
    open_paren = line.rindex("(")
    fileid = line[open_paren + 1:-1].strip()
    words = [w for w in line[:open_paren].split() if w not in ("<s>", "</s>")]
    if not fileid:
        raise DataError(f"{path}:{lineno}: empty file id in '{line}'")
    if not words:
        raise DataError(f"{path}:{lineno}: empty transcript for '{fileid}'")
    return fileid, " ".join(words)


def an4_utt_id(fileid: str, speaker: str) -> str:
    """``an251-fash-b`` -> ``fash-an251-b``: move the speaker to the front (ESPnet convention)."""
    parts = fileid.split("-")
    if speaker not in parts:
        raise DataError(f"AN4 file id '{fileid}' does not contain its speaker '{speaker}'")
    parts.remove(speaker)  # first occurrence only
    return "-".join([speaker] + parts)


def read_an4_set(an4_root: Path, set_name: str) -> DataDir:
    """Build the tables of one AN4 set (``train`` or ``test``) in memory."""
    etc = an4_root / "etc"
    prefix = AN4_SETS[set_name]
    transcription = etc / f"{prefix}.transcription"
    fileids_path = etc / f"{prefix}.fileids"
    for needed in (transcription, fileids_path):
        if not needed.is_file():
            raise DataError(f"{needed}: AN4 file not found (is {an4_root} an AN4 'an4' directory?)")
    # fileid -> relative path under wav/, from the official list.
    rel_paths: Dict[str, str] = {}
    for lineno, line in enumerate(fileids_path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            rel = line.strip()
            rel_paths[Path(rel).name] = rel
    data = DataDir(text={})
    for lineno, line in enumerate(transcription.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fileid, words = parse_transcription_line(line, transcription, lineno)
        if fileid not in rel_paths:
            raise DataError(f"{transcription}:{lineno}: file id '{fileid}' is not listed in {fileids_path}")
        sph = (an4_root / "wav" / (rel_paths[fileid] + ".sph")).resolve()
        if not sph.is_file():
            raise DataError(f"{transcription}:{lineno}: audio for '{fileid}' not found: {sph}")
        speaker = sph.parent.name
        utt = an4_utt_id(fileid, speaker)
        if utt in data.utt2spk:
            raise DataError(f"{transcription}:{lineno}: duplicated file id '{fileid}'")
        data.wav_scp[utt] = str(sph)
        data.text[utt] = words
        data.utt2spk[utt] = speaker
    if not data.utt2spk:
        raise DataError(f"{transcription}: no utterances")
    return data


def prepare_an4(an4_root: Path, out_dir: Path, n_dev: Optional[int] = None, check_audio: bool = True) -> Dict[str, Path]:
    """Write ``train``, ``train_nodev``, ``train_dev`` and ``test`` data dirs under ``out_dir``.

    ``n_dev`` defaults to 100 when train has more than 200 utterances (ESPnet's AN4 recipe) and
    to 1 otherwise (ESPnet's mini_an4). Returns ``{name: path}``.
    """
    an4_root, out_dir = Path(an4_root), Path(out_dir)
    if not (an4_root / "etc").is_dir():
        raise DataError(f"{an4_root}: not an AN4 tree (no etc/ directory); pass the 'downloads/an4' directory")
    written: Dict[str, Path] = {}
    for set_name in AN4_SETS:
        written[set_name] = write_data_dir(out_dir / set_name, read_an4_set(an4_root, set_name))
        validate_data_dir(written[set_name], check_audio=check_audio)
    train_ids: List[str] = sorted(
        (line.split()[0] for line in (written["train"] / "utt2spk").read_text().splitlines()), key=kaldi_sort_key
    )
    if n_dev is None:
        n_dev = 100 if len(train_ids) > 200 else 1
    if not 0 < n_dev < len(train_ids):
        raise DataError(f"n_dev must be between 1 and {len(train_ids) - 1} (train has {len(train_ids)} utterances), got {n_dev}")
    written["train_dev"] = subset_data_dir(written["train"], out_dir / "train_dev", train_ids[:n_dev])
    written["train_nodev"] = subset_data_dir(written["train"], out_dir / "train_nodev", train_ids[n_dev:])
    return written
