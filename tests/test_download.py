"""Downloads over real local HTTP and file:// URLs: checksums, atomicity, skips, errors; fetching split manifests."""

import functools
import hashlib
import http.server
import json
import re
import shutil
import socket
import threading
import urllib.parse
import zipfile

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


# ------------------------------------------------------------------------------------ datasets: asc data download


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.root`` with HTTP Range support, a fake Zenodo search API (``server.zenodo``), and cuts the
    next transfer of a file short after ``server.cut[name]`` bytes (the connection drops mid-file)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        self.server.requests.append((path, self.headers.get("Range")))
        if path.startswith("/api/records"):
            body = json.dumps(self.server.zenodo).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        file = self.server.root / urllib.parse.unquote(path.lstrip("/"))
        if not file.is_file():
            self.send_error(404)
            return
        data, start = file.read_bytes(), 0
        if self.headers.get("Range"):
            start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.server.cut.pop(file.name, None)
        self.wfile.write(data[start:] if cut is None else data[start:start + cut])
        self.close_connection = cut is not None


@pytest.fixture
def range_server(tmp_path):
    """An HTTP server on 127.0.0.1 with Range support; ``.root`` is the served folder, ``.url`` its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.root, server.requests, server.cut, server.zenodo = tmp_path / "www", [], {}, {}
    server.root.mkdir()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _zip(path, folder, top, files):
    """Write the zip ``path`` holding ``files`` (paths relative to ``folder``) under the top-level name ``top``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for rel in files:
            zf.write(folder / rel, f"{top}/{rel}" if top else rel)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tau_archives(server, dev, top="TAU-test-dev"):
    """The synthetic development set as a TAU-style meta archive and two audio archives on the server, and a
    catalog entry (a test manifest with their md5) for it."""
    tables = ["meta.csv"] + [f"evaluation_setup/{p.name}" for p in (dev / "evaluation_setup").iterdir()]
    audio = sorted(f"audio/{p.name}" for p in (dev / "audio").iterdir())
    parts = {f"{top}.meta.zip": tables, f"{top}.audio.1.zip": audio[::2], f"{top}.audio.2.zip": audio[1::2]}
    entries = "".join(f'\n[[files]]\nname = "{name}"\nmd5 = "{_zip(server.root / name, dev, top, files)}"\n'
                      for name, files in parts.items())
    manifest = server.root.parent / "tau-test.toml"
    manifest.write_text(f'name = "tau-test"\ntitle = "test set"\nkind = "tau"\nfolder = "{top}"\n'
                        f'base_url = "{server.url}"\n{entries}')
    return manifest, audio


def test_download_resumes_an_interrupted_transfer_then_checks_the_dataset(range_server, synth_data, tmp_path,
                                                                         capsys):
    manifest, audio = _tau_archives(range_server, synth_data.dev)
    big = range_server.root / "TAU-test-dev.audio.1.zip"
    half = big.stat().st_size // 2
    range_server.cut[big.name] = half  # the connection drops half-way through the first audio archive
    out = tmp_path / "data"
    assert main(["data", "download", str(manifest), str(out)]) == 2
    assert "run the same command again to resume" in capsys.readouterr().err
    part = out / ".asc-download" / (big.name + ".part")
    assert part.stat().st_size == half and part.read_bytes() == big.read_bytes()[:half]
    root = out / "TAU-test-dev"
    assert (root / "meta.csv").is_file() and not (root / "audio").exists()  # the meta archive was finished
    range_server.requests.clear()

    assert main(["data", "download", str(manifest), str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["root"] == str(root) and result["check"]["ok"], result["check"]
    requested = dict(range_server.requests)
    assert requested["/" + big.name] == f"bytes={half}-"  # resumed, not restarted
    assert "/TAU-test-dev.meta.zip" not in requested  # finished archives are not fetched again
    assert sorted(f"audio/{p.name}" for p in (root / "audio").iterdir()) == audio
    assert (root / "meta.csv").read_bytes() == (synth_data.dev / "meta.csv").read_bytes()
    assert not list((out / ".asc-download").glob("*.zip*"))  # archives removed after extraction
    assert main(["data", "check", str(root)]) == 0
    range_server.requests.clear()
    assert main(["data", "download", str(manifest), str(out), "--no-check"]) == 0  # all done: nothing fetched
    assert range_server.requests == []


def test_download_checksum_mismatch_keeps_nothing(range_server, synth_data, tmp_path, capsys):
    manifest, _ = _tau_archives(range_server, synth_data.dev)
    (range_server.root / "TAU-test-dev.audio.2.zip").write_bytes(b"not the published archive")
    out = tmp_path / "data"
    assert main(["data", "download", str(manifest), str(out)]) == 2
    err = capsys.readouterr().err
    assert "TAU-test-dev.audio.2.zip: md5 mismatch" in err and "expected" in err
    assert not list((out / ".asc-download").glob("TAU-test-dev.audio.2.zip*"))  # neither the file nor a .part
    state = json.loads((out / ".asc-download" / "tau-test.json").read_text())
    assert sorted(state["done"]) == ["TAU-test-dev.audio.1.zip", "TAU-test-dev.meta.zip"]


def test_download_from_a_zenodo_record_and_of_single_files(range_server, synth_data, tmp_path, capsys):
    server, ev = range_server, synth_data.eval
    files = ["evaluation_setup/fold1_test.csv"] + sorted(f"audio/{p.name}" for p in (ev / "audio").iterdir())
    name = "TAU-test-eval.audio.1.zip"
    md5 = _zip(server.root / name, ev, "TAU-test-eval", files)
    server.zenodo = {"hits": {"hits": [
        {"id": 1, "files": [{"key": "other.zip", "checksum": "md5:" + "0" * 32, "size": 1}]},
        {"id": 42, "files": [{"key": name, "size": (server.root / name).stat().st_size, "checksum": f"md5:{md5}",
                              "links": {"self": server.url + name}}]}]}}
    manifest = tmp_path / "eval.toml"
    manifest.write_text('name = "eval-test"\ntitle = "t"\nkind = "eval"\nfolder = "TAU-test-eval"\n'
                        f'zenodo_api = "{server.url}api"\nzenodo_query = \'title:"test"\'\n')
    out = tmp_path / "data"
    assert main(["data", "download", str(manifest), str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["zenodo_record"] == "42" and result["check"]["ok"], result
    assert (out / "TAU-test-eval" / "evaluation_setup" / "fold1_test.csv").is_file()
    assert server.requests[0][0] == "/api/records"

    # impulse responses: plain files saved into DIR/<folder>, each decoded by the check
    wavs = sorted((synth_data.dev / "audio").iterdir())[:2]
    entries = ""
    for wav in wavs:
        shutil.copy(wav, server.root / wav.name.replace("-", "&"))
        entries += f'\n[[files]]\nname = "{wav.name.replace("-", "&")}"\nmd5 = "{file_digest(wav, "md5")}"\n'
    dirs = tmp_path / "dirs.toml"
    dirs.write_text(f'name = "dirs-test"\ntitle = "t"\nkind = "dirs"\nfolder = "micirp"\nextract = false\n'
                    f'base_url = "{server.url}"\n{entries}')
    assert main(["data", "download", str(dirs), str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["check"]["ok"] and len(list((out / "micirp").glob("*.wav"))) == 2


def test_archive_member_outside_the_folder_is_refused(tmp_path):
    from asc.data.datasets import extract

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(DatasetError, match="outside the target folder"):
        extract(evil, tmp_path / "out", "ds", tmp_path / "staging")
    assert not (tmp_path / "outside.txt").exists()


def test_packaged_catalog_pins_the_published_checksums():
    from asc.data.datasets import list_datasets, load_spec

    assert list_datasets() == ["micirp", "tau2022-mobile-dev", "tau2024-mobile-eval"]
    dev = load_spec("tau2022-mobile-dev")
    assert dev.kind == "tau" and dev.folder == "TAU-urban-acoustic-scenes-2022-mobile-development"
    assert len(dev.files) == 18 and sum(".audio." in a.name for a in dev.files) == 16
    assert {a.md5 for a in dev.files if a.name.endswith(".meta.zip")} == {"419b6ff6570f1030730352dc80cd8d15"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", a.md5) for a in dev.files)
    dirs = load_spec("micirp")
    assert len(dirs.files) == 66 and not dirs.extract and dirs.kind == "dirs"
    assert load_spec("tau2024-mobile-eval").zenodo_query
