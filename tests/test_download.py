"""Downloads over real local HTTP and file:// URLs: checksums, atomicity, skips, errors; fetching split manifests."""

import functools
import hashlib
import http.server
import shutil
import socket
import threading

import pytest

from asc.cli import main
from asc.data.download import ChecksumError, DownloadError, download
from asc.data.splits import fetch_splits, load_manifest
from asc.errors import AscError, DatasetError
from asc.fileio import file_digest

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: several read chunks


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(folder, base URL) of an HTTP server on localhost serving ``folder``."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_http_download_with_both_checksums(served, tmp_path):
    folder, url = served
    (folder / "w.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "w.bin"
    got = download(url + "w.bin", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                   md5=hashlib.md5(PAYLOAD).hexdigest().upper(), progress=False)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == []


def test_file_url_download(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = download(src.as_uri(), tmp_path / "dst.bin", md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_bad_checksum_leaves_nothing(served, tmp_path):
    folder, url = served
    (folder / "w.bin").write_bytes(PAYLOAD)
    out = tmp_path / "out"
    out.mkdir()
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as e:
        download(url + "w.bin", out / "w.bin", sha256=wrong, progress=False)
    msg = str(e.value)
    assert "w.bin" in msg and wrong in msg and hashlib.sha256(PAYLOAD).hexdigest() in msg and url in msg
    assert e.value.expected == wrong and e.value.algorithm == "sha256"
    assert list(out.iterdir()) == []


def test_existing_file_with_right_checksum_is_not_fetched_again(served, tmp_path):
    folder, url = served
    (folder / "w.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "w.bin"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    download(url + "w.bin", dest, sha256=digest, progress=False)
    (folder / "w.bin").unlink()  # the server no longer has it: only a skip can succeed
    assert download(url + "w.bin", dest, sha256=digest, progress=False).read_bytes() == PAYLOAD


def test_existing_file_with_wrong_checksum_is_replaced(served, tmp_path):
    folder, url = served
    (folder / "w.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "w.bin"
    dest.write_bytes(b"stale")
    download(url + "w.bin", dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_http_errors_name_the_url(served, tmp_path):
    _, url = served
    with pytest.raises(DownloadError, match=rf"{url}missing.bin: HTTP 404"):
        download(url + "missing.bin", tmp_path / "m.bin", progress=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/w.bin"
    with pytest.raises(DownloadError, match=rf"{dead}: cannot reach it"):
        download(dead, tmp_path / "m.bin", progress=False)
    with pytest.raises(DownloadError, match="cannot reach it"):
        download((tmp_path / "nope.bin").as_uri(), tmp_path / "m.bin", progress=False)
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        download("ftp://example.org/w.bin", tmp_path / "m.bin", progress=False)
    with pytest.raises(AscError, match="not 32 hex digits"):
        download(url + "w.bin", tmp_path / "m.bin", md5="abc", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]


def _mini_manifest(folder, tmp_path, tamper=False):
    """Two small split files served from ``folder`` and a manifest for them."""
    tables = {"split5.csv": ["audio/bus-lyon-1-1-0-a.wav\tbus"],
              "test.csv": ["audio/park-lyon-2-1-0-a.wav\tpark", "audio/park-lyon-2-1-1-a.wav\tpark"]}
    entries = []
    for name, rows in tables.items():
        text = "filename\tscene_label\n" + "\n".join(rows) + "\n"
        md5 = hashlib.md5(text.encode()).hexdigest()
        (folder / name).write_text(text + ("audio/x.wav\tbus\n" if tamper and name == "test.csv" else ""))
        entries.append(f'[[files]]\nsplit = "{name[5:-4] if name != "test.csv" else "test"}"\nname = "{name}"\n'
                       f'rows = {len(rows)}\nmd5 = "{md5}"\n')
    manifest = tmp_path / "mini.toml"
    manifest.write_text('name = "mini"\nbase_url = "https://unused.invalid/"\n\n' + "\n".join(entries))
    return manifest


def test_fetch_manifest_from_local_server_and_file_url(served, tmp_path):
    folder, url = served
    manifest = _mini_manifest(folder, tmp_path)
    root = tmp_path / "ds"
    root.mkdir()
    records = fetch_splits(root, manifest=manifest, base_url=url, progress=False)
    assert [(r["split"], r["rows"], r["status"]) for r in records] == [("5", 1, "downloaded"),
                                                                       ("test", 2, "downloaded")]
    assert (root / "splits" / "test.csv").read_text() == (folder / "test.csv").read_text()
    assert [r["status"] for r in fetch_splits(root, manifest=manifest, base_url=url)] == ["present", "present"]
    other = tmp_path / "ds2"
    other.mkdir()
    assert main(["data", "splits", "fetch", str(other), "--manifest", str(manifest), "--base-url",
                 folder.as_uri()]) == 0
    assert sorted(p.name for p in (other / "splits").iterdir()) == ["split5.csv", "test.csv"]


def test_fetch_is_all_or_nothing(served, tmp_path, capsys):
    folder, url = served
    manifest = _mini_manifest(folder, tmp_path, tamper=True)
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(ChecksumError, match="test.csv: md5 mismatch"):
        fetch_splits(root, manifest=manifest, base_url=url, progress=False)
    assert list((root / "splits").iterdir()) == []  # split5.csv was fine but is not left behind either
    assert main(["data", "splits", "fetch", str(root), "--manifest", str(manifest), "--base-url", url]) == 2
    assert "md5 mismatch" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="dataset folder not found"):
        fetch_splits(tmp_path / "absent", manifest=manifest, base_url=url)


def test_fetch_official_manifest_from_local_copy(served, tmp_path, shared_dir):
    folder, url = served
    for f in load_manifest("dcase2024").files:
        if not f.source:
            shutil.copy(shared_dir / "splits" / f.name, folder / f.name)
    root = tmp_path / "tau"
    (root / "evaluation_setup").mkdir(parents=True)
    records = {r["split"]: r for r in fetch_splits(root, base_url=url, progress=False)}
    assert {k: r["rows"] for k, r in records.items()} == {"5": 6980, "10": 13960, "25": 34900, "50": 69800,
                                                         "100": 139620, "test": 29680}
    assert records["100"]["status"] == "not in dataset" and records["5"]["status"] == "downloaded"
    assert file_digest(root / "splits" / "split5.csv", "md5") == "ad379c595bdb2387153753cc5b584820"
    assert sorted(p.name for p in (root / "splits").iterdir()) == ["split10.csv", "split25.csv", "split5.csv",
                                                                  "split50.csv", "test.csv"]
