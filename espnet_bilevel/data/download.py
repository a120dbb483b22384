"""Resumable, verified downloads and idempotent archive extraction (stdlib only).

* :func:`download_and_verify` fetches ``url`` (http, https or file://) into ``dest_dir`` through a
  ``<name>.part`` file, resuming an interrupted http(s) download with a Range request, verifies
  size / md5 / sha256 and only then renames the file to its final name. A final file that exists
  already is verified instead of downloaded again.
* :func:`extract` unpacks a tar archive into a private temp dir inside ``dest`` and merges it into
  ``dest`` only when unpacking finished; a ``.done`` marker makes reruns no-ops.

Every expected failure (no network, truncated or corrupt archive) raises DataError with the path
and what to do about it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional, TextIO

from espnet_bilevel.data.kaldi_dir import DataError, atomic_write_text

CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, md5: Optional[str] = None, size: Optional[int] = None, sha256: Optional[str] = None) -> None:
    """Raise DataError if ``path`` does not have the expected size / checksums."""
    path = Path(path)
    actual_size = path.stat().st_size
    advice = f"delete {path} and retry (or put an intact copy there by hand)"
    if size is not None and actual_size != size:
        kind = "truncated" if actual_size < size else "larger than expected"
        raise DataError(f"{path} is {kind}: {actual_size} bytes, expected {size}; {advice}")
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            actual = file_digest(path, algorithm)
            if actual.lower() != expected.lower():
                raise DataError(
                    f"{path} is corrupt or truncated: {algorithm} {actual}, expected {expected}; {advice}"
                )


def _filename_from_url(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise DataError(f"cannot tell a file name from the URL {url}")
    return name


def download_and_verify(
    url: str,
    dest_dir: Path,
    md5: Optional[str] = None,
    size: Optional[int] = None,
    sha256: Optional[str] = None,
    filename: Optional[str] = None,
    manual_hint: str = "",
    timeout: float = 60.0,
    log: Optional[TextIO] = None,
) -> Path:
    """Download ``url`` into ``dest_dir`` (atomically, resumably) and verify it; return the path.

    ``manual_hint`` completes the no-network message, e.g. "or set LIBRISPEECH to an extracted copy".
    """
    log = log or sys.stderr
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / (filename or _filename_from_url(url))
    if final.exists():
        verify_file(final, md5=md5, size=size, sha256=sha256)
        return final
    part = final.with_name(final.name + ".part")
    scheme = urllib.parse.urlparse(url).scheme
    offset = part.stat().st_size if part.exists() and scheme in ("http", "https") else 0
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    hint = f" {manual_hint}" if manual_hint else ""
    print(f"download: {url} -> {final}" + (f" (resuming at {offset} bytes)" if offset else ""), file=log)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            # A server that ignores Range answers 200 with the whole file: start over then.
            status = getattr(response, "status", None)
            mode = "ab" if offset and status == 206 else "wb"
            with open(part, mode) as out:
                shutil.copyfileobj(response, out, CHUNK)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot download {url}: {reason}; put the archive at {final} by hand{hint}")
    verify_file(part, md5=md5, size=size, sha256=sha256)
    os.replace(part, final)
    return final


def _merge_into(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into ``dst``, merging directories that exist on both sides."""
    for entry in list(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _merge_into(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def extract(archive: Path, dest: Path, marker: Optional[Path] = None, log: Optional[TextIO] = None) -> Path:
    """Unpack a tar(.gz/.bz2/.xz) archive into ``dest``; idempotent through ``marker``.

    ``marker`` defaults to ``<dest>/.<archive name>.done``. Archives with members outside
    ``dest`` (absolute paths, ``..``, links pointing out) are rejected. Returns ``dest``.
    """
    log = log or sys.stderr
    archive, dest = Path(archive), Path(dest)
    marker = Path(marker) if marker is not None else dest / f".{archive.name}.done"
    if marker.is_file():
        return dest
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".extract_{archive.name}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    print(f"extract: {archive} -> {dest}", file=log)
    advice = f"delete {archive} and retry the download"
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                # Python >= 3.11.4 / 3.12: the 'data' filter rejects unsafe members.
                tar.extractall(staging, filter="data")
            else:  # pragma: no cover - older Pythons
                for member in tar.getmembers():
                    target = (staging / member.name).resolve()
                    if not str(target).startswith(str(staging.resolve()) + os.sep) or member.issym() or member.islnk():
                        raise DataError(f"{archive}: unsafe member '{member.name}'")
                tar.extractall(staging)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, getattr(tarfile, "FilterError", ())):
            raise DataError(f"{archive}: refusing to extract unsafe member ({exc})")
        raise DataError(f"{archive} is truncated or corrupt ({exc.__class__.__name__}: {exc}); {advice}")
    _merge_into(staging, dest)
    shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(marker, f"{archive.name}\n")
    return dest
