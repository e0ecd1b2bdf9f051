"""Download a file from an http(s):// or file:// URL: checksum verified, atomic, skipped when already present."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from asc.errors import AscError
from asc.fileio import atomic_path, file_digest

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "file")
CHUNK = 1 << 20


class DownloadError(AscError):
    """A URL cannot be fetched (unreachable host, HTTP error, missing file, unsupported scheme)."""


class ChecksumError(AscError):
    """A downloaded or existing file does not have the expected digest."""

    def __init__(self, path: Path, algorithm: str, expected: str, actual: str, url: str | None = None):
        self.path, self.algorithm, self.expected, self.actual, self.url = Path(path), algorithm, expected, actual, url
        source = f" (downloaded from {url}; not saved)" if url else ""
        super().__init__(f"{path}: {algorithm} mismatch{source}: expected {expected}, got {actual}; "
                         f"check the URL and the expected checksum, then retry")


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    out = {}
    for algorithm, digest in (("sha256", sha256), ("md5", md5)):
        if digest:
            digest = digest.strip().lower()
            size = hashlib.new(algorithm).digest_size * 2
            if len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
                raise AscError(f"{algorithm} checksum {digest!r} is not {size} hex digits")
            out[algorithm] = digest
    return out


def verify(path: Path, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has every given digest."""
    for algorithm, digest in _expected(sha256, md5).items():
        actual = file_digest(path, algorithm)
        if actual != digest:
            raise ChecksumError(path, algorithm, digest, actual)


def download(url: str, dest: str | Path, sha256: str | None = None, md5: str | None = None,
             progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest`` and return ``dest``.

    The data goes to a temporary file beside ``dest`` that is renamed onto it only when the transfer is complete and
    every given checksum matches, so a failure never leaves a partial file. If ``dest`` already exists and matches the
    given checksums (or none are given) nothing is downloaded.
    """
    dest = Path(dest)
    expected = _expected(sha256, md5)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(f"{url}: unsupported URL scheme {scheme or '(none)'!r}; use http(s):// or file:// "
                            "(a local file is file:///abs/path/name)")
    if dest.is_file():
        try:
            verify(dest, sha256, md5)
            log.info("%s: already present%s", dest, " with the expected checksum" if expected else "")
            return dest
        except ChecksumError as e:
            log.warning("%s; downloading it again", e)
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; check the URL") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"{url}: cannot reach it ({e.reason}); check the URL and the network") from None
    except (OSError, ValueError) as e:
        raise DownloadError(f"{url}: cannot open it ({e}); check the URL") from None
    hashes = {algorithm: hashlib.new(algorithm) for algorithm in expected}
    with response, atomic_path(dest) as tmp:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                        desc=dest.name, disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except OSError as e:
                    raise DownloadError(f"{url}: transfer failed after {received} bytes ({e}); retry") from None
                if not block:
                    break
                f.write(block)
                for h in hashes.values():
                    h.update(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise DownloadError(f"{url}: transfer ended after {received} of {total} bytes; retry")
        for algorithm, digest in expected.items():
            actual = hashes[algorithm].hexdigest()
            if actual != digest:
                raise ChecksumError(dest, algorithm, digest, actual, url=url)
    log.info("%s: downloaded %d bytes from %s", dest, received, url)
    return dest
