"""Kaldi-style data directories: read, write, validate, fix, subset, combine, split.

A data dir holds plain-text tables keyed by the first whitespace-separated field of each line:

* ``wav.scp``   ``<reco-or-utt> <path>`` (a file soundfile can read: wav, flac, NIST .sph;
  Kaldi pipe commands ``... |`` are not supported, because no sph2pipe/Kaldi exists in our CI);
* ``text``      ``<utt> <transcript>``;
* ``utt2spk``   ``<utt> <spk>`` and its inverse ``spk2utt`` ``<spk> <utt1> <utt2> ...``;
* ``segments``  ``<utt> <reco> <start-sec> <end-sec>`` (optional; then wav.scp is keyed by recording);
* ``utt2dur`` / ``reco2dur`` ``<id> <seconds>`` (optional).

Kaldi (and ESPnet's ``asr.sh``) expects every table sorted by key in C-locale byte order, and
utterance ids prefixed by the speaker id so that sorting by utterance also groups speakers.

This module imports only the standard library (and soundfile, lazily, for audio checks), never
espnet2/torch: the recipe stages call it as a fast CLI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

# Files keyed by utterance id (when a segments file exists wav.scp/reco2dur are keyed by recording).
UTT_TABLES = ("text", "utt2spk", "segments", "utt2dur")
RECO_TABLES = ("wav.scp", "reco2dur")
ALL_TABLES = ("wav.scp", "text", "utt2spk", "spk2utt", "segments", "utt2dur", "reco2dur")

# How many example ids an error message lists before saying "...".
N_EXAMPLES = 5


class DataError(Exception):
    """An expected problem with input data; CLIs print it as ``ERROR: <message>`` and exit 1."""


# ---------------------------------------------------------------------------------------------
# atomic file / directory writing
# ---------------------------------------------------------------------------------------------


def atomic_write_text(path: PathLike, content: str) -> None:
    """Write ``content`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_lines(path: PathLike, lines: Iterable[str]) -> None:
    """Write lines (without trailing newline) atomically, one per line."""
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def replace_dir(tmp_dir: PathLike, final_dir: PathLike) -> None:
    """Move a completely written ``tmp_dir`` to ``final_dir``, replacing an existing one.

    ``os.replace`` cannot replace a non-empty directory, so an existing target is first renamed
    aside; a crash in between leaves either the old or the new dir under a recognisable name,
    never a half-written ``final_dir``.
    """
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    old = final_dir.with_name(final_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


def fresh_tmp_dir(final_dir: PathLike) -> Path:
    """Return an empty ``<final_dir>.tmp`` (left-overs of an interrupted run are removed)."""
    tmp = Path(str(final_dir) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


# ---------------------------------------------------------------------------------------------
# reading tables
# ---------------------------------------------------------------------------------------------


def kaldi_sort_key(key: str) -> bytes:
    """Sort key matching ``LC_ALL=C sort``: byte order of the UTF-8 encoding."""
    return key.encode("utf-8")


def read_table_lines(path: PathLike) -> List[Tuple[int, str, str]]:
    """Read ``<key> <value...>`` lines as ``(line_number, key, value)``; blank lines are errors.

    Duplicate keys raise a DataError naming both line numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows: List[Tuple[int, str, str]] = []
    first_line: Dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                raise DataError(f"{path}:{lineno}: empty line")
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if key in first_line:
                raise DataError(
                    f"{path}:{lineno}: duplicated id '{key}' (first seen on line {first_line[key]})"
                )
            first_line[key] = lineno
            rows.append((lineno, key, value))
    return rows


def read_table(path: PathLike) -> Dict[str, str]:
    """Read a Kaldi table into an insertion-ordered ``{key: value}`` dict."""
    return {key: value for _, key, value in read_table_lines(path)}


def write_table(path: PathLike, table: Dict[str, str]) -> None:
    """Write ``{key: value}`` sorted in Kaldi order, atomically."""
    keys = sorted(table, key=kaldi_sort_key)
    atomic_write_lines(path, [f"{k} {table[k]}".rstrip() for k in keys])


def utt2spk_to_spk2utt(utt2spk: Dict[str, str]) -> Dict[str, List[str]]:
    """Invert utt2spk; speakers and each speaker's utterances come out in Kaldi sort order."""
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=kaldi_sort_key):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: spk2utt[spk] for spk in sorted(spk2utt, key=kaldi_sort_key)}


def _is_pipe(wav_value: str) -> bool:
    return wav_value.rstrip().endswith("|")


# ---------------------------------------------------------------------------------------------
# in-memory data dir
# ---------------------------------------------------------------------------------------------


@dataclass
class DataDir:
    """All tables of one data dir (``segments``/durations are None when absent)."""

    wav_scp: Dict[str, str] = field(default_factory=dict)
    text: Optional[Dict[str, str]] = None
    utt2spk: Dict[str, str] = field(default_factory=dict)
    segments: Optional[Dict[str, Tuple[str, float, float]]] = None
    utt2dur: Optional[Dict[str, str]] = None
    reco2dur: Optional[Dict[str, str]] = None

    @property
    def utt_ids(self) -> List[str]:
        return sorted(self.utt2spk, key=kaldi_sort_key)


def _parse_segments(path: Path) -> Dict[str, Tuple[str, float, float]]:
    segments: Dict[str, Tuple[str, float, float]] = {}
    for lineno, utt, value in read_table_lines(path):
        fields = value.split()
        if len(fields) != 3:
            raise DataError(
                f"{path}:{lineno}: expected '<utt> <reco> <start> <end>', got {len(fields) + 1} fields"
            )
        reco, start_s, end_s = fields
        try:
            start, end = float(start_s), float(end_s)
        except ValueError:
            raise DataError(f"{path}:{lineno}: start/end times must be numbers, got '{start_s} {end_s}'")
        if start < 0 or end <= start:
            raise DataError(f"{path}:{lineno}: segment '{utt}' has start {start} and end {end} (need 0 <= start < end)")
        segments[utt] = (reco, start, end)
    return segments


def read_data_dir(path: PathLike, require_text: bool = True) -> DataDir:
    """Load a data dir; raises DataError naming the first missing file or malformed line."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: data directory not found")
    required = ["wav.scp", "utt2spk"] + (["text"] if require_text else [])
    for name in required:
        if not (path / name).is_file():
            raise DataError(f"{path}: required file '{name}' is missing")
    data = DataDir(wav_scp=read_table(path / "wav.scp"), utt2spk=read_table(path / "utt2spk"))
    if (path / "text").is_file():
        data.text = read_table(path / "text")
    if (path / "segments").is_file():
        data.segments = _parse_segments(path / "segments")
    for name in ("utt2dur", "reco2dur"):
        if (path / name).is_file():
            setattr(data, name, read_table(path / name))
    return data


def write_data_dir(path: PathLike, data: DataDir) -> Path:
    """Write ``data`` (plus a regenerated spk2utt) into ``<path>.tmp`` and rename it into place."""
    path = Path(path)
    tmp = fresh_tmp_dir(path)
    write_table(tmp / "wav.scp", data.wav_scp)
    write_table(tmp / "utt2spk", data.utt2spk)
    spk2utt = utt2spk_to_spk2utt(data.utt2spk)
    atomic_write_lines(tmp / "spk2utt", [f"{s} {' '.join(u)}" for s, u in spk2utt.items()])
    if data.text is not None:
        write_table(tmp / "text", data.text)
    if data.segments is not None:
        write_table(
            tmp / "segments",
            {u: f"{r} {_fmt_time(s)} {_fmt_time(e)}" for u, (r, s, e) in data.segments.items()},
        )
    for name in ("utt2dur", "reco2dur"):
        table = getattr(data, name)
        if table is not None:
            write_table(tmp / name, table)
    replace_dir(tmp, path)
    return path


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.2f}"


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def id_examples(ids: Iterable[str]) -> str:
    """The first few ids in Kaldi order, for error messages ("a, b, c, ...")."""
    ids = sorted(ids, key=kaldi_sort_key)
    shown = ", ".join(ids[:N_EXAMPLES])
    return shown + (", ..." if len(ids) > N_EXAMPLES else "")


def compare_ids(name_a: str, ids_a: Iterable[str], name_b: str, ids_b: Iterable[str], where: Path) -> None:
    """DataError naming ``where`` and examples on each side if the two id sets differ."""
    set_a, set_b = set(ids_a), set(ids_b)
    if set_a == set_b:
        return
    only_a, only_b = set_a - set_b, set_b - set_a
    parts = [f"{where}: ids of {name_a} ({len(set_a)}) and {name_b} ({len(set_b)}) differ"]
    if only_a:
        parts.append(f"{len(only_a)} only in {name_a}: {id_examples(only_a)}")
    if only_b:
        parts.append(f"{len(only_b)} only in {name_b}: {id_examples(only_b)}")
    raise DataError("; ".join(parts))


def _check_sorted(path: Path) -> None:
    previous: Optional[str] = None
    for lineno, key, _ in read_table_lines(path):
        if previous is not None and kaldi_sort_key(key) < kaldi_sort_key(previous):
            raise DataError(
                f"{path}:{lineno}: ids are not sorted ('{key}' comes after '{previous}'); "
                f"Kaldi/ESPnet need C-locale sort order: run fix_data_dir "
                f"(python -m espnet_bilevel.bin.validate_data_dir --fix {path.parent})"
            )
        previous = key


def audio_info(path: PathLike):
    """soundfile.info with our error messages (imported lazily: soundfile loads libsndfile)."""
    import soundfile

    path = Path(path)
    if not path.exists():
        raise DataError(f"audio file does not exist: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"audio file is empty (zero bytes): {path}")
    try:
        return soundfile.info(str(path))
    except Exception as exc:  # libsndfile raises RuntimeError/LibsndfileError for corrupt files
        raise DataError(f"cannot read audio file {path}: {exc}".strip())


def check_audio_file(path: PathLike, expected_fs: Optional[int] = 16000) -> float:
    """Check one audio file (exists, readable, non-empty, mono, sample rate); return seconds."""
    info = audio_info(path)
    if info.frames == 0:
        raise DataError(f"audio file has zero samples: {path}")
    if expected_fs is not None and info.samplerate != expected_fs:
        raise DataError(f"audio file {path} has sample rate {info.samplerate} Hz, expected {expected_fs} Hz")
    if info.channels != 1:
        raise DataError(f"audio file {path} has {info.channels} channels; only mono audio is supported")
    return info.frames / info.samplerate


def validate_data_dir(
    path: PathLike,
    require_text: bool = True,
    check_audio: bool = True,
    expected_fs: Optional[int] = 16000,
    token_list: Optional[PathLike] = None,
) -> DataDir:
    """Check a data dir and return it loaded; raise DataError with one clear message otherwise.

    Checks: required files exist; no duplicated or empty lines; every table sorted; spk2utt equal
    to the inverse of utt2spk (if present); ids of wav.scp (or segments) / text / utt2spk match;
    no empty transcript; pipes in wav.scp are rejected. With ``check_audio`` every audio file must
    exist, be readable by soundfile, be non-empty, mono and at ``expected_fs`` Hz, and segments must
    lie inside their recordings. With ``token_list`` (an ESPnet char ``tokens.txt``) every
    transcript character must be a token (see :func:`check_charset`).
    """
    path = Path(path)
    data = read_data_dir(path, require_text=require_text)

    for lineno, key, value in read_table_lines(path / "wav.scp"):
        if _is_pipe(value):
            raise DataError(
                f"{path / 'wav.scp'}:{lineno}: '{key}' is a pipe command ('... |'); pipes are not "
                f"supported: wav.scp must give a path that soundfile can read (wav/flac/.sph)"
            )
        if not value:
            raise DataError(f"{path / 'wav.scp'}:{lineno}: '{key}' has no audio path")

    for name in ALL_TABLES:
        if (path / name).is_file():
            _check_sorted(path / name)

    if data.segments is not None:
        compare_ids("segments", data.segments, "utt2spk", data.utt2spk, path)
        recos = {reco for reco, _, _ in data.segments.values()}
        unknown = recos - set(data.wav_scp)
        if unknown:
            raise DataError(
                f"{path / 'segments'}: {len(unknown)} recording ids are not in wav.scp: {id_examples(unknown)}"
            )
    else:
        compare_ids("wav.scp", data.wav_scp, "utt2spk", data.utt2spk, path)
    if data.text is not None:
        compare_ids("text", data.text, "utt2spk", data.utt2spk, path)
        for lineno, utt, transcript in read_table_lines(path / "text"):
            if not transcript:
                raise DataError(f"{path / 'text'}:{lineno}: empty transcript for utterance '{utt}'")
    if data.utt2dur is not None:
        compare_ids("utt2dur", data.utt2dur, "utt2spk", data.utt2spk, path)

    if (path / "spk2utt").is_file():
        expected = utt2spk_to_spk2utt(data.utt2spk)
        for lineno, spk, value in read_table_lines(path / "spk2utt"):
            if expected.get(spk) != value.split():
                raise DataError(
                    f"{path / 'spk2utt'}:{lineno}: speaker '{spk}' does not match utt2spk; "
                    f"regenerate spk2utt (fix_data_dir)"
                )
        compare_ids("spk2utt speakers", read_table(path / "spk2utt"), "utt2spk speakers", expected, path)

    if check_audio:
        wav_lines = {key: lineno for lineno, key, _ in read_table_lines(path / "wav.scp")}
        durations: Dict[str, float] = {}
        for key, wav in data.wav_scp.items():
            wav_path = Path(wav)
            if not wav_path.is_absolute():
                # Relative paths are resolved by ESPnet against the current directory.
                wav_path = Path.cwd() / wav_path
            try:
                durations[key] = check_audio_file(wav_path, expected_fs)
            except DataError as exc:
                raise DataError(f"{path / 'wav.scp'}:{wav_lines[key]}: '{key}': {exc}")
        if data.segments is not None:
            for utt, (reco, start, end) in data.segments.items():
                # 0.1 s of slack: STM/segment times are rounded to centiseconds.
                if end > durations[reco] + 0.1:
                    raise DataError(
                        f"{path / 'segments'}: segment '{utt}' ends at {end:.2f} s but recording "
                        f"'{reco}' is only {durations[reco]:.2f} s long"
                    )

    if token_list is not None and data.text is not None:
        check_charset(path / "text", token_list)
    return data


def fix_data_dir(path: PathLike, require_text: bool = True) -> Dict[str, int]:
    """Sort every table, keep only utterances present in all tables, rewrite spk2utt.

    Duplicated ids are not fixed (which line is right is unknowable): they raise DataError.
    Returns ``{"kept": n, "dropped": m}``. The dir is rewritten via ``<path>.tmp``.
    """
    path = Path(path)
    data = read_data_dir(path, require_text=require_text)
    keep = set(data.utt2spk)
    if data.text is not None:
        keep &= {u for u, t in data.text.items() if t}
    if data.segments is not None:
        keep &= {u for u, (r, _, _) in data.segments.items() if r in data.wav_scp}
    else:
        keep &= set(data.wav_scp)
    if data.utt2dur is not None:
        keep &= set(data.utt2dur)
    all_ids = set(data.utt2spk) | set(data.text or {})
    all_ids |= set(data.segments) if data.segments is not None else set(data.wav_scp)
    dropped = len(all_ids) - len(keep)
    _filter_in_place(data, keep)
    write_data_dir(path, data)
    return {"kept": len(keep), "dropped": dropped}


def _filter_in_place(data: DataDir, keep: set) -> None:
    data.utt2spk = {u: s for u, s in data.utt2spk.items() if u in keep}
    if data.text is not None:
        data.text = {u: t for u, t in data.text.items() if u in keep}
    if data.utt2dur is not None:
        data.utt2dur = {u: d for u, d in data.utt2dur.items() if u in keep}
    if data.segments is not None:
        data.segments = {u: seg for u, seg in data.segments.items() if u in keep}
        recos = {r for r, _, _ in data.segments.values()}
        data.wav_scp = {r: w for r, w in data.wav_scp.items() if r in recos}
        if data.reco2dur is not None:
            data.reco2dur = {r: d for r, d in data.reco2dur.items() if r in recos}
    else:
        data.wav_scp = {u: w for u, w in data.wav_scp.items() if u in keep}
        if data.reco2dur is not None:
            data.reco2dur = {u: d for u, d in data.reco2dur.items() if u in keep}


# ---------------------------------------------------------------------------------------------
# subset / combine / split
# ---------------------------------------------------------------------------------------------


def subset_data_dir(src: PathLike, dst: PathLike, utt_ids: Iterable[str]) -> Path:
    """Write the utterances ``utt_ids`` of ``src`` as a new data dir ``dst`` (atomically)."""
    data = read_data_dir(src, require_text=False)
    wanted = set(utt_ids)
    unknown = wanted - set(data.utt2spk)
    if unknown:
        raise DataError(f"{src}: {len(unknown)} requested utterance ids are not in utt2spk: {id_examples(unknown)}")
    if not wanted:
        raise DataError(f"{src}: refusing to write an empty subset to {dst}")
    _filter_in_place(data, wanted)
    return write_data_dir(dst, data)


def combine_data_dirs(dst: PathLike, srcs: Sequence[PathLike]) -> Path:
    """Concatenate data dirs into ``dst``; ids must be unique across sources.

    Sources without ``segments`` are combined with ones that have them by adding a whole-file
    segment per utterance (duration read from the audio header), as Kaldi's combine_data.sh does.
    ``text`` is written only if every source has one.
    """
    if not srcs:
        raise DataError(f"combine_data_dirs: no source dirs given for {dst}")
    loaded = [(Path(s), read_data_dir(s, require_text=False)) for s in srcs]
    any_segments = any(d.segments is not None for _, d in loaded)
    all_text = all(d.text is not None for _, d in loaded)
    out = DataDir(text={} if all_text else None, segments={} if any_segments else None)
    seen_utt: Dict[str, Path] = {}
    seen_reco: Dict[str, Path] = {}
    for src, data in loaded:
        for utt in data.utt2spk:
            if utt in seen_utt:
                raise DataError(f"utterance id '{utt}' occurs in both {seen_utt[utt]} and {src}")
            seen_utt[utt] = src
        for reco, wav in data.wav_scp.items():
            if reco in seen_reco and out.wav_scp[reco] != wav:
                raise DataError(f"wav.scp id '{reco}' occurs in both {seen_reco[reco]} and {src} with different paths")
            seen_reco[reco] = src
            out.wav_scp[reco] = wav
        out.utt2spk.update(data.utt2spk)
        if all_text:
            out.text.update(data.text)
        if any_segments:
            if data.segments is not None:
                out.segments.update(data.segments)
            else:
                for utt in data.utt2spk:
                    duration = check_audio_file(data.wav_scp[utt], expected_fs=None)
                    out.segments[utt] = (utt, 0.0, duration)
    return write_data_dir(dst, out)


def split_scp(scp: PathLike, n: int, out_dir: Optional[PathLike] = None) -> List[Path]:
    """Split a table into ``n`` contiguous, nearly equal parts for parallel jobs.

    Parts are ``<out_dir>/<name>.<i>`` for i = 1..n (default ``out_dir``: ``<scp dir>/split<n>``),
    each written atomically; contiguous chunks keep a speaker's utterances together, as Kaldi's
    split_scp.pl does. Returns the part paths in order.
    """
    scp = Path(scp)
    rows = read_table_lines(scp)
    if n < 1:
        raise DataError(f"split_scp: number of parts must be >= 1, got {n}")
    if n > len(rows):
        raise DataError(f"{scp}: cannot split {len(rows)} lines into {n} parts; use at most {len(rows)} jobs")
    out_dir = Path(out_dir) if out_dir is not None else scp.parent / f"split{n}"
    out_dir.mkdir(parents=True, exist_ok=True)
    base, extra = divmod(len(rows), n)
    paths: List[Path] = []
    start = 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        chunk = rows[start:start + size]
        start += size
        part = out_dir / f"{scp.name}.{i + 1}"
        atomic_write_lines(part, [f"{k} {v}".rstrip() for _, k, v in chunk])
        paths.append(part)
    return paths


# ---------------------------------------------------------------------------------------------
# character set
# ---------------------------------------------------------------------------------------------

SPACE_TOKEN = "<space>"


def read_token_list(token_list_file: PathLike) -> List[str]:
    """Read an ESPnet token list (one token per line)."""
    path = Path(token_list_file)
    if not path.is_file():
        raise DataError(f"{path}: token list not found")
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f if line.strip()]
    if not tokens:
        raise DataError(f"{path}: token list is empty")
    return tokens


def check_charset(text_file: PathLike, token_list_file: PathLike, raise_error: bool = True) -> List[Tuple[int, str, List[str]]]:
    """Find transcript characters that are not in a char token list.

    A space in the transcript must be covered by ``<space>`` (ESPnet's char tokenizer maps it
    so). Returns ``[(line_number, utt_id, sorted unknown chars)]``; with ``raise_error`` (default)
    a non-empty result raises DataError naming the file, line, utterance and characters.
    """
    tokens = set(read_token_list(token_list_file))
    problems: List[Tuple[int, str, List[str]]] = []
    for lineno, utt, transcript in read_table_lines(text_file):
        unknown = set()
        for ch in transcript:
            symbol = SPACE_TOKEN if ch == " " else ch
            if symbol not in tokens:
                unknown.add(symbol)
        if unknown:
            problems.append((lineno, utt, sorted(unknown)))
    if problems and raise_error:
        all_chars = sorted({c for _, _, chars in problems for c in chars})
        lineno, utt, chars = problems[0]
        raise DataError(
            f"{text_file}:{lineno}: utterance '{utt}' has characters not in {token_list_file}: "
            f"{' '.join(repr(c) for c in chars)} ({len(problems)} lines affected; all unknown characters: "
            f"{' '.join(repr(c) for c in all_chars)})"
        )
    return problems
