"""TED-LIUM release 2 (OpenSLR resource 19): Kaldi data dirs with segments, and a labeled /
unlabeled split of the training talks.

Layout: ``<root>/TEDLIUM_release2/{train,dev,test}/{sph/<talk>.sph, stm/<talk>.stm}``. STM lines
are ``<talk> <channel> <speaker> <start> <end> [<label>] <words...>``.

Data dirs: ``wav.scp`` ``<talk> <abs path .sph>`` (uncompressed NIST SPHERE, read by soundfile),
``segments`` ``<utt> <talk> <start> <end>``, ``text``, ``utt2spk``, ``spk2utt``. Utterance ids are
``<speaker>-<start*100:07d>-<end*100:07d>`` and the speaker is the STM speaker field (the talk), as
in the Kaldi / ESPnet tedlium2 recipes.

Transcript normalisation (ESPnet's ``local/prepare_data.sh`` + ``join_suffix.py`` where they agree
with a character-level bilevel setup):

* lines whose transcript is ``ignore_time_segment_in_scoring`` are skipped;
* pronunciation-variant marks are removed (``word(2)`` -> ``word``), as is a trailing
  ``(utterance-name)`` token that some training lines carry;
* ``<...>`` tokens (``<sil>``, ``<unk>``) are dropped;
* ``{NOISE}``-style non-speech tags are dropped by default because a character model has no
  symbol for them; ``keep_noise_tags=True`` keeps them as ``[NOISE]`` (Kaldi/ESPnet style);
* split contractions are joined (``it 's`` -> ``it's``);
* segments that are empty after this, and exact duplicate lines, are skipped.

Text stays lowercase as distributed. Unlike Kaldi we do not pad training segment times.

Labeled/unlabeled split: :func:`split_labeled_unlabeled` draws whole talks (speakers) at random
(seeded) until the labeled set reaches ``n_labeled_hours`` (default **50 h of the ~207 h** of
training audio) or ``fraction`` of the total; all other talks form the unlabeled set. Splitting by
talk keeps one speaker's voice out of both sets.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, TextIO, Tuple

from espnet_bilevel.data.download import download_and_verify, extract
from espnet_bilevel.data.kaldi_dir import (
    DataDir,
    DataError,
    check_audio_file,
    read_data_dir,
    subset_data_dir,
    validate_data_dir,
    write_data_dir,
)

URL = "https://www.openslr.org/resources/19/TEDLIUM_release2.tar.gz"
# SHA-256 of TEDLIUM_release2.tar.gz as shipped in torchaudio (torchaudio/datasets/tedlium.py,
# _RELEASE_CONFIGS["release2"]["checksum"]). We have no verified md5 or size, so none is listed.
SHA256 = "93281b5fcaaae5c88671c9d000b443cb3c7ea3499ad12010b3934ca41a7b9c58"
SETS = ("train", "dev", "test")
DEFAULT_LABELED_HOURS = 50.0
IGNORE = "ignore_time_segment_in_scoring"

_VARIANT = re.compile(r"\(\d+\)$")
_LABEL = re.compile(r"^<[^<>]*,[^<>]*>$")  # e.g. <o,f0,male>


def corpus_dir(root: Path) -> Path:
    return Path(root) / "TEDLIUM_release2"


def download_tedlium2(root: Path, url: str = URL, verify: bool = True, log: Optional[TextIO] = None) -> Path:
    """Ensure ``<root>/TEDLIUM_release2`` exists, downloading and extracting it when missing."""
    target = corpus_dir(root)
    if target.is_dir():
        print(f"tedlium2: {target} exists; skipping download", file=log or sys.stderr)
        return target
    archive = download_and_verify(
        url, Path(root), sha256=SHA256 if verify else None,
        manual_hint=f"(or extract it yourself so that {target} exists)", log=log,
    )
    extract(archive, Path(root), log=log)
    if not target.is_dir():
        raise DataError(f"{archive} did not contain TEDLIUM_release2/; delete it and retry")
    return target


def normalize_transcript(words: List[str], keep_noise_tags: bool = False) -> str:
    """Apply the transcript rules of the module docstring to the STM words of one segment."""
    out: List[str] = []
    for i, word in enumerate(words):
        if i == len(words) - 1 and word.startswith("(") and word.endswith(")"):
            continue  # trailing utterance name
        if word.startswith("<") and word.endswith(">"):
            continue
        if word.startswith("{") and word.endswith("}"):
            if keep_noise_tags:
                out.append("[" + word[1:-1] + "]")
            continue
        word = _VARIANT.sub("", word)
        if not word:
            continue
        if word.startswith("'") and out:
            out[-1] += word
        else:
            out.append(word)
    return " ".join(out)


def parse_stm_file(stm: Path, keep_noise_tags: bool = False) -> List[Tuple[str, str, float, float, str]]:
    """Return ``(talk, speaker, start, end, text)`` for every usable line of one STM file."""
    segments = []
    seen = set()
    for lineno, line in enumerate(stm.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith(";;"):
            continue
        fields = line.split()
        if len(fields) < 5:
            raise DataError(f"{stm}:{lineno}: expected '<talk> <channel> <speaker> <start> <end> ...', got '{line}'")
        talk, _, speaker, start_s, end_s = fields[:5]
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise DataError(f"{stm}:{lineno}: start/end must be numbers, got '{start_s} {end_s}'")
        words = fields[5:]
        if words and _LABEL.match(words[0]):
            words = words[1:]
        if words == [IGNORE]:
            continue
        if end <= start:
            raise DataError(f"{stm}:{lineno}: segment end {end} is not after its start {start}")
        text = normalize_transcript(words, keep_noise_tags)
        if not text:
            continue
        key = (talk, speaker, start, end, text)
        if key in seen:
            continue
        seen.add(key)
        segments.append(key)
    return segments


def utt_id(speaker: str, start: float, end: float) -> str:
    return f"{speaker}-{int(round(start * 100)):07d}-{int(round(end * 100)):07d}"


def read_tedlium2_set(root: Path, set_name: str, keep_noise_tags: bool = False) -> DataDir:
    """Collect the tables of ``train``, ``dev`` or ``test`` from its STM files."""
    if set_name not in SETS:
        raise DataError(f"unknown TED-LIUM set '{set_name}' (known: {', '.join(SETS)})")
    base = corpus_dir(root) / set_name
    stm_dir, sph_dir = base / "stm", base / "sph"
    if not stm_dir.is_dir():
        raise DataError(f"TED-LIUM 2 directory not found: {stm_dir} (point --root at the dir containing TEDLIUM_release2/)")
    stm_files = sorted(stm_dir.glob("*.stm"))
    if not stm_files:
        raise DataError(f"{stm_dir}: no .stm files")
    data = DataDir(text={}, segments={})
    for stm in stm_files:
        for talk, speaker, start, end, text in parse_stm_file(stm, keep_noise_tags):
            sph = sph_dir / f"{talk}.sph"
            if talk not in data.wav_scp:
                if not sph.is_file():
                    raise DataError(f"{stm}: audio for talk '{talk}' is missing: {sph}")
                data.wav_scp[talk] = str(sph.resolve())
            utt = utt_id(speaker, start, end)
            if utt in data.utt2spk:
                # Same speaker and same rounded times with a different text: keep the first.
                print(f"tedlium2: {stm}: skipping second segment with id {utt}", file=sys.stderr)
                continue
            data.segments[utt] = (talk, start, end)
            data.text[utt] = text
            data.utt2spk[utt] = speaker
    return data


def prepare_tedlium2(
    root: Path, out_dir: Path, sets=SETS, keep_noise_tags: bool = False, check_audio: bool = False
) -> Dict[str, Path]:
    """Write ``<out_dir>/{train,dev,test}``; returns ``{set: data dir}``."""
    written = {}
    for set_name in sets:
        target = write_data_dir(Path(out_dir) / set_name, read_tedlium2_set(root, set_name, keep_noise_tags))
        validate_data_dir(target, check_audio=check_audio)
        written[set_name] = target
    return written


def _utterance_seconds(data_dir: Path, data: DataDir) -> Dict[str, float]:
    if data.segments is not None:
        return {u: end - start for u, (_, start, end) in data.segments.items()}
    if data.utt2dur is not None:
        return {u: float(d) for u, d in data.utt2dur.items()}
    return {u: check_audio_file(data.wav_scp[u], expected_fs=None) for u in data.utt2spk}


def split_labeled_unlabeled(
    train_dir: Path,
    labeled_dir: Path,
    unlabeled_dir: Path,
    n_labeled_hours: Optional[float] = DEFAULT_LABELED_HOURS,
    fraction: Optional[float] = None,
    seed: int = 0,
) -> Dict[str, float]:
    """Split a data dir by speaker into a labeled part of about ``n_labeled_hours`` (or ``fraction``
    of the total duration) and an unlabeled part with everything else.

    Speakers are shuffled with ``random.Random(seed)`` and added until the target is reached, so
    the labeled set overshoots by at most one speaker. Both dirs keep ``text`` (the recipe decides
    whether to read the unlabeled one). Returns hours and speaker counts of both parts.
    """
    train_dir = Path(train_dir)
    data = read_data_dir(train_dir, require_text=False)
    seconds = _utterance_seconds(train_dir, data)
    total = sum(seconds.values())
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise DataError(f"fraction must be between 0 and 1, got {fraction}")
        target = fraction * total
    elif n_labeled_hours is not None:
        if n_labeled_hours <= 0:
            raise DataError(f"n_labeled_hours must be positive, got {n_labeled_hours}")
        target = n_labeled_hours * 3600.0
    else:
        raise DataError("give n_labeled_hours or fraction")
    per_speaker: Dict[str, List[str]] = {}
    for utt in sorted(data.utt2spk):
        per_speaker.setdefault(data.utt2spk[utt], []).append(utt)
    speakers = sorted(per_speaker)
    if len(speakers) < 2:
        raise DataError(f"{train_dir}: need at least 2 speakers to split, found {len(speakers)}")
    if target >= total:
        raise DataError(
            f"{train_dir}: labeled target {target / 3600:.2f} h is not below the total {total / 3600:.2f} h; "
            f"nothing would be left unlabeled"
        )
    random.Random(seed).shuffle(speakers)
    labeled: List[str] = []
    labeled_seconds = 0.0
    for spk in speakers:
        if labeled_seconds >= target or len(labeled) == len(speakers) - 1:
            break
        labeled.append(spk)
        labeled_seconds += sum(seconds[u] for u in per_speaker[spk])
    unlabeled = [s for s in speakers if s not in set(labeled)]
    subset_data_dir(train_dir, labeled_dir, [u for s in labeled for u in per_speaker[s]])
    subset_data_dir(train_dir, unlabeled_dir, [u for s in unlabeled for u in per_speaker[s]])
    return {
        "labeled_hours": labeled_seconds / 3600.0,
        "unlabeled_hours": (total - labeled_seconds) / 3600.0,
        "labeled_speakers": len(labeled),
        "unlabeled_speakers": len(unlabeled),
    }
