from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from espnet_bilevel.data.download import download_and_verify, extract, verify_file
from espnet_bilevel.data.kaldi_dir import DataError


def make_tar_gz(path: Path, files: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture
def archive(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return make_tar_gz(src / "corpus.tar.gz", {"Corpus/a.txt": b"alpha\n", "Corpus/sub/b.txt": b"beta" * 5000})


def test_file_url_download_verify_extract(tmp_path, archive):
    data = archive.read_bytes()
    md5, sha = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()
    got = download_and_verify(archive.as_uri(), tmp_path / "dl", md5=md5, size=len(data), sha256=sha, log=io.StringIO())
    assert got == tmp_path / "dl" / "corpus.tar.gz" and got.read_bytes() == data
    assert not (tmp_path / "dl" / "corpus.tar.gz.part").exists()
    # present already: verified, not fetched again (the source may vanish)
    archive.unlink()
    assert download_and_verify(archive.as_uri(), tmp_path / "dl", md5=md5, log=io.StringIO()) == got
    dest = extract(got, tmp_path / "out", log=io.StringIO())
    assert (dest / "Corpus" / "sub" / "b.txt").read_bytes() == b"beta" * 5000
    marker = tmp_path / "out" / ".corpus.tar.gz.done"
    assert marker.is_file()
    # idempotent: a second call does not touch the tree
    (dest / "Corpus" / "a.txt").write_text("edited")
    extract(got, tmp_path / "out", log=io.StringIO())
    assert (dest / "Corpus" / "a.txt").read_text() == "edited"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".extract_")]


def test_extract_merges_shared_top_dir(tmp_path):
    a = make_tar_gz(tmp_path / "a.tar.gz", {"LibriSpeech/dev-clean/x.txt": b"x"})
    b = make_tar_gz(tmp_path / "b.tar.gz", {"LibriSpeech/test-clean/y.txt": b"y"})
    extract(a, tmp_path / "root", log=io.StringIO())
    extract(b, tmp_path / "root", log=io.StringIO())
    assert (tmp_path / "root/LibriSpeech/dev-clean/x.txt").is_file()
    assert (tmp_path / "root/LibriSpeech/test-clean/y.txt").is_file()


def test_checksum_mismatch(tmp_path, archive):
    with pytest.raises(DataError) as err:
        download_and_verify(archive.as_uri(), tmp_path / "dl", md5="0" * 32, log=io.StringIO())
    message = str(err.value)
    assert "corpus.tar.gz.part is corrupt or truncated" in message and "delete" in message
    assert not (tmp_path / "dl" / "corpus.tar.gz").exists()


def test_truncated_archive(tmp_path, archive):
    data = archive.read_bytes()
    cut = tmp_path / "dl" / "corpus.tar.gz"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"corpus.tar.gz is truncated: \d+ bytes, expected \d+; delete"):
        verify_file(cut, size=len(data))
    with pytest.raises(DataError) as err:
        extract(cut, tmp_path / "out", log=io.StringIO())
    assert "corpus.tar.gz is truncated or corrupt" in str(err.value) and "delete" in str(err.value)
    assert not (tmp_path / "out" / ".corpus.tar.gz.done").exists()
    assert not (tmp_path / "out" / "Corpus").exists()


def test_unsafe_member_rejected(tmp_path):
    bad = make_tar_gz(tmp_path / "bad.tar.gz", {"../escape.txt": b"x"})
    with pytest.raises(DataError, match="unsafe"):
        extract(bad, tmp_path / "out", log=io.StringIO())
    assert not (tmp_path / "escape.txt").exists()


def test_no_network_message(tmp_path):
    with pytest.raises(DataError) as err:
        download_and_verify("http://127.0.0.1:9/x/part.tar.gz", tmp_path / "dl", manual_hint="or set X=dir",
                            timeout=5, log=io.StringIO())
    message = str(err.value)
    assert message.startswith("cannot download http://127.0.0.1:9/x/part.tar.gz: ")
    assert f"put the archive at {tmp_path / 'dl' / 'part.tar.gz'} by hand or set X=dir" in message
    with pytest.raises(DataError, match="cannot download file:"):
        download_and_verify((tmp_path / "missing.tar.gz").as_uri(), tmp_path / "dl", log=io.StringIO())


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):  # noqa: N802 - http.server API
        start = 0
        header = self.headers.get("Range")
        if header:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_resume_from_part(tmp_path):
    payload = bytes(range(256)) * 400
    _RangeHandler.payload = payload
    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dest = tmp_path / "dl"
        dest.mkdir()
        (dest / "blob.bin.part").write_bytes(payload[:1000])
        log = io.StringIO()
        url = f"http://127.0.0.1:{server.server_port}/blob.bin"
        got = download_and_verify(url, dest, sha256=hashlib.sha256(payload).hexdigest(), log=log)
        assert "resuming at 1000 bytes" in log.getvalue()
        assert got.read_bytes() == payload
    finally:
        server.shutdown()
        server.server_close()
