"""A small, deterministic synthetic English corpus (espeak-ng + sox) with speaker *domains*.

Purpose: the embedded mini recipe needs a corpus that is (a) generated offline in seconds,
(b) exactly reproducible from a seed, and (c) shaped like the bilevel setting: a small labeled
set from some domains, a large unlabeled set from all domains, and a test set that is partly from
domains never seen with labels.

* Vocabulary: 38 words (digits, colors, animals, commands, directions, yes/no, a few modifiers);
  sentences are 1-3 short phrases drawn from a tiny grammar, uppercase (like AN4/LibriSpeech).
* Domain = a group of espeak-ng voices x variants with its own speaking-rate and pitch range.
  A speaker is one (domain, voice, variant); utterances draw rate/pitch inside the domain range.
* Splits: ``train_labeled`` (only ``LABELED_DOMAINS``), ``train_unlabeled``, ``dev`` and ``test``
  (all domains). Every sentence occurs in exactly one split. ``train_unlabeled`` still gets a
  ``text`` file for analysis; recipes decide whether to read it. ``extra_unlabeled`` adds more
  unlabeled utterances without changing anything else (how much does more unlabeled audio help?).
* Audio: espeak-ng's 22.05 kHz output piped through ``sox -D`` (no dither, so repeatable) to 16 kHz
  mono 16-bit wav under ``<out>/wav/<split>/``; each file is written to a temp name and renamed.
* Output: ``<out>/data/<split>/{wav.scp,text,utt2spk,spk2utt}``, ``<out>/corpus_info.json`` and
  ``<out>/.done`` holding a hash of the generating arguments: a rerun with the same arguments is
  a no-op, with different ones an error (delete the dir or pick another one).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, TextIO, Tuple

from espnet_bilevel.data.kaldi_dir import (
    DataDir,
    DataError,
    atomic_write_text,
    check_audio_file,
    validate_data_dir,
    write_data_dir,
)

# Bump when the plan or the synthesis commands change, so old corpora are not mistaken as current.
CORPUS_VERSION = 1

WORDS = {
    "digit": "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE".split(),
    "color": "RED GREEN BLUE BLACK WHITE YELLOW".split(),
    "animal": "CAT DOG BIRD FISH HORSE COW".split(),
    "command": "GO STOP OPEN CLOSE TURN MOVE".split(),
    "direction": "LEFT RIGHT UP DOWN".split(),
    "answer": "YES NO".split(),
    "determiner": "THE A".split(),
    "size": "BIG SMALL".split(),
}
VOCABULARY = sorted({w for words in WORDS.values() for w in words})


@dataclass(frozen=True)
class Domain:
    """A group of synthetic speakers sharing voices and speaking-rate / pitch ranges."""

    name: str
    voices: Tuple[str, ...]
    variants: Tuple[str, ...]  # espeak-ng variant suffixes, "" = the voice's default
    speed: Tuple[int, int]  # words per minute, inclusive range (espeak-ng -s)
    pitch: Tuple[int, int]  # 0-99, inclusive range (espeak-ng -p)

    def speakers(self) -> List[Tuple[str, str, str]]:
        """``(speaker_id, voice, variant)`` for every voice x variant of the domain."""
        out = []
        for voice in self.voices:
            for variant in self.variants:
                spk = f"{self.name}_{voice.replace('-', '')}_{variant.lstrip('+') or 'v0'}"
                out.append((spk, voice, variant))
        return out


# Only gmw/ voices: the mbrola voices are listed by espeak-ng but not installed.
DOMAINS: Tuple[Domain, ...] = (
    Domain("usmid", ("en-us",), ("", "+m3"), (150, 175), (40, 55)),
    Domain("gbmid", ("en", "en-gb-x-rp"), ("", "+f2"), (150, 175), (45, 60)),
    Domain("nycfast", ("en-us-nyc",), ("+m3", "+f4"), (195, 230), (50, 70)),
    Domain("scotslow", ("en-gb-scotland",), ("", "+m3"), (115, 140), (25, 40)),
    Domain("carhigh", ("en-029",), ("+f2", "+f4"), (160, 190), (70, 90)),
    Domain("lanclow", ("en-gb-x-gbclan",), ("", "+f2"), (140, 165), (10, 25)),
)
# Domains that have labeled data; the other three appear only unlabeled / in dev and test.
LABELED_DOMAINS = ("usmid", "gbmid", "nycfast")
SPLITS = ("train_labeled", "train_unlabeled", "dev", "test")
DEFAULT_SIZES = {"train_labeled": 60, "train_unlabeled": 600, "dev": 40, "test": 60}


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    split: str
    domain: str
    speaker: str
    voice: str  # espeak-ng voice including the variant suffix
    speed: int
    pitch: int
    text: str


def _phrase(rng: random.Random) -> List[str]:
    kind = rng.randrange(4)
    if kind == 0:  # command + noun phrase, e.g. OPEN THE BIG RED CAT
        words = [rng.choice(WORDS["command"]), rng.choice(WORDS["determiner"])]
        if rng.random() < 0.5:
            words.append(rng.choice(WORDS["size"]))
        return words + [rng.choice(WORDS["color"]), rng.choice(WORDS["animal"])]
    if kind == 1:  # digit string
        return [rng.choice(WORDS["digit"]) for _ in range(rng.randint(2, 4))]
    if kind == 2:  # answer + command + direction
        return [rng.choice(WORDS["answer"]), rng.choice(WORDS["command"]), rng.choice(WORDS["direction"])]
    # counted objects
    return [rng.choice(WORDS["digit"]), rng.choice(WORDS["size"]), rng.choice(WORDS["animal"])]


def make_sentences(rng: random.Random, n: int, exclude: Iterable[str] = ()) -> List[str]:
    """``n`` distinct sentences of 1-3 phrases, none in ``exclude`` (deterministic given the rng state)."""
    sentences: List[str] = []
    seen = set(exclude)
    attempts = 0
    while len(sentences) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise DataError(f"could not draw {n} distinct sentences from the vocabulary")
        words: List[str] = []
        for _ in range(rng.randint(1, 3)):
            words += _phrase(rng)
        sentence = " ".join(words)
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences


def plan_corpus(
    seed: int = 0, sizes: Optional[Dict[str, int]] = None, extra_unlabeled: int = 0
) -> Dict[str, List[Utterance]]:
    """Decide every utterance (id, domain, speaker, voice, rate, pitch, text); no audio.

    Pure function of (seed, sizes, extra_unlabeled). Domains are assigned round-robin over a
    shuffled domain order per split, so every allowed domain is covered as soon as a split has that
    many utterances. ``extra_unlabeled`` utterances are appended to ``train_unlabeled`` from a random
    stream of their own, after everything else is planned: the corpus without them is exactly the
    corpus of (seed, sizes), so a run with more unlabeled audio has the same labeled, dev and test
    sets (and the extra sentences occur in no other split).
    """
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    for split, n in sizes.items():
        if split not in DEFAULT_SIZES:
            raise DataError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
        if n < 1:
            raise DataError(f"split '{split}' must have at least 1 utterance, got {n}")
    if extra_unlabeled < 0:
        raise DataError(f"extra_unlabeled must be >= 0, got {extra_unlabeled}")
    rng = random.Random(seed)
    sentences = make_sentences(rng, sum(sizes[s] for s in SPLITS))
    plan: Dict[str, List[Utterance]] = {}
    counter = 0
    for split in SPLITS:
        allowed = list(LABELED_DOMAINS) if split == "train_labeled" else [d.name for d in DOMAINS]
        texts = sentences[counter : counter + sizes[split]]
        plan[split] = _plan_split(rng, split, allowed, texts, first_index=counter + 1)
        counter += sizes[split]
    if extra_unlabeled:
        # A string seed is hashed by random itself (sha512), independent of PYTHONHASHSEED.
        extra_rng = random.Random(f"extra_unlabeled:{seed}")
        texts = make_sentences(extra_rng, extra_unlabeled, exclude=sentences)
        plan["train_unlabeled"] += _plan_split(
            extra_rng, "train_unlabeled", [d.name for d in DOMAINS], texts, first_index=counter + 1
        )
    return plan


def _plan_split(
    rng: random.Random, split: str, allowed: List[str], texts: List[str], first_index: int
) -> List[Utterance]:
    """One utterance per text, domains round-robin over ``allowed``; ids numbered from ``first_index``."""
    by_name = {d.name: d for d in DOMAINS}
    utts: List[Utterance] = []
    order: List[str] = []
    for index, text in enumerate(texts, start=first_index):
        if not order:
            order = allowed[:]
            rng.shuffle(order)
        domain = by_name[order.pop()]
        spk, voice, variant = rng.choice(domain.speakers())
        utts.append(
            Utterance(
                utt_id=f"{spk}-{index:05d}",
                split=split,
                domain=domain.name,
                speaker=spk,
                voice=voice + variant,
                speed=rng.randint(*domain.speed),
                pitch=rng.randint(*domain.pitch),
                text=text,
            )
        )
    return utts


def check_tools() -> None:
    """Raise DataError with the install command if espeak-ng or sox is missing."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise DataError(
            f"{' and '.join(missing)} not found on PATH; install with: apt-get install espeak-ng sox"
        )


def synthesize_utterance(utt: Utterance, wav_path: Path) -> None:
    """espeak-ng -> sox -> 16 kHz mono 16-bit wav, written to a temp name and renamed."""
    espeak = subprocess.run(
        ["espeak-ng", "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch), "--stdout", utt.text.lower()],
        capture_output=True,
    )
    if espeak.returncode != 0 or not espeak.stdout:
        raise DataError(
            f"espeak-ng failed for {utt.utt_id} (voice {utt.voice}): "
            f"{espeak.stderr.decode(errors='replace').strip() or 'no audio produced'}"
        )
    tmp = wav_path.with_name(f".{wav_path.name}.part")
    sox = subprocess.run(
        ["sox", "-D", "-t", "wav", "-", "-t", "wav", "-r", "16000", "-c", "1", "-b", "16", str(tmp)],
        input=espeak.stdout,
        capture_output=True,
    )
    if sox.returncode != 0:
        if tmp.exists():
            tmp.unlink()
        raise DataError(f"sox failed for {utt.utt_id}: {sox.stderr.decode(errors='replace').strip()}")
    os.replace(tmp, wav_path)


def args_hash(seed: int, sizes: Dict[str, int], extra_unlabeled: int = 0) -> str:
    args: Dict = {"version": CORPUS_VERSION, "seed": seed, "sizes": sizes}
    if extra_unlabeled:  # absent when 0, so the corpora made before the option keep their hash
        args["extra_unlabeled"] = extra_unlabeled
    payload = json.dumps(args, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def synthesize_corpus(
    out_dir: Path,
    seed: int = 0,
    sizes: Optional[Dict[str, int]] = None,
    jobs: int = 2,
    progress_every: int = 100,
    log: Optional[TextIO] = None,
    extra_unlabeled: int = 0,
) -> Dict:
    """Build the whole corpus under ``out_dir``; returns the corpus_info dict.

    Idempotent: with a matching ``<out_dir>/.done`` nothing is done. An interrupted run resumes
    (finished wav files are complete thanks to the rename, and are kept when the arguments match).
    """
    log = log or sys.stderr
    out_dir = Path(out_dir).resolve()
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    digest = args_hash(seed, sizes, extra_unlabeled)
    done_marker = out_dir / ".done"
    info_path = out_dir / "corpus_info.json"
    if done_marker.is_file():
        if done_marker.read_text().strip() == digest and info_path.is_file():
            print(f"synth_corpus: {out_dir} is already complete (args hash {digest}); nothing to do", file=log)
            return json.loads(info_path.read_text())
        raise DataError(
            f"{out_dir} holds a corpus made with different arguments ({done_marker} has another hash); "
            f"delete {out_dir} or choose another output directory"
        )
    check_tools()
    plan = plan_corpus(seed, sizes, extra_unlabeled)

    # A partial run with other arguments may have left wavs with the same names: start clean then.
    in_progress = out_dir / ".in_progress"
    if in_progress.is_file() and in_progress.read_text().strip() != digest:
        shutil.rmtree(out_dir / "wav", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(in_progress, digest + "\n")

    work: List[Tuple[Utterance, Path]] = []
    for split, utts in plan.items():
        wav_dir = out_dir / "wav" / split
        wav_dir.mkdir(parents=True, exist_ok=True)
        for utt in utts:
            work.append((utt, wav_dir / f"{utt.utt_id}.wav"))
    todo = [(u, p) for u, p in work if not p.is_file()]
    total = len(todo)
    print(f"synth_corpus: synthesizing {total} of {len(work)} utterances with {jobs} jobs into {out_dir}", file=log)
    lock = threading.Lock()
    finished = [0]

    def run_one(item: Tuple[Utterance, Path]) -> None:
        synthesize_utterance(*item)
        with lock:
            finished[0] += 1
            if progress_every and (finished[0] % progress_every == 0 or finished[0] == total):
                print(f"synth_corpus: {finished[0]}/{total} utterances", file=log, flush=True)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        # list() re-raises the first worker exception (a DataError) here.
        list(pool.map(run_one, todo))

    info: Dict = {
        "version": CORPUS_VERSION,
        "seed": seed,
        "args_hash": digest,
        "extra_unlabeled": extra_unlabeled,
        "vocabulary": VOCABULARY,
        "domains": {d.name: {**asdict(d), "speakers": [s for s, _, _ in d.speakers()]} for d in DOMAINS},
        "labeled_domains": list(LABELED_DOMAINS),
        "unseen_in_labeled": [d.name for d in DOMAINS if d.name not in LABELED_DOMAINS],
        "splits": {},
    }
    for split, utts in plan.items():
        wav_dir = out_dir / "wav" / split
        data = DataDir(
            wav_scp={u.utt_id: str(wav_dir / f"{u.utt_id}.wav") for u in utts},
            text={u.utt_id: u.text for u in utts},
            utt2spk={u.utt_id: u.speaker for u in utts},
        )
        data_dir = write_data_dir(out_dir / "data" / split, data)
        validate_data_dir(data_dir, check_audio=False)
        domain_counts: Dict[str, int] = {}
        for u in utts:
            domain_counts[u.domain] = domain_counts.get(u.domain, 0) + 1
        seconds = sum(check_audio_file(wav_dir / f"{u.utt_id}.wav") for u in utts)
        info["splits"][split] = {
            "n_utts": len(utts),
            "n_speakers": len({u.speaker for u in utts}),
            "hours": round(seconds / 3600.0, 4),
            "domains": dict(sorted(domain_counts.items())),
        }
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
    atomic_write_text(done_marker, digest + "\n")
    in_progress.unlink()
    summary = ", ".join(f"{s} {v['n_utts']}" for s, v in info["splits"].items())
    print(f"synth_corpus: done ({summary}); wrote {info_path}", file=log)
    return info
