"""Download a file from an http(s):// or file:// URL: checksum verified, atomic, skipped when already present,
optionally resumable (HTTP Range)."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
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
             progress: bool = True, resume: bool = False) -> Path:
    """Fetch ``url`` into ``dest`` and return ``dest``.

    The data goes to a file beside ``dest`` that is renamed onto it only when the transfer is complete and every
    given checksum matches, so ``dest`` is never a partial file. If ``dest`` already exists and matches the given
    checksums (or none are given) nothing is downloaded.

    Without ``resume`` a failed transfer leaves nothing behind. With ``resume`` the bytes received so far stay in
    ``<dest>.part`` and the next call asks the server for the rest (HTTP ``Range``); a server that ignores ranges
    sends the whole file again. A checksum mismatch deletes the ``.part`` file, so a retry starts afresh.
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
    if resume:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        _transfer(url, dest, part, expected, progress, resume=True)
        os.replace(part, dest)
    else:
        with atomic_path(dest) as tmp:
            _transfer(url, dest, tmp, expected, progress, resume=False)
    return dest


def _open(url: str, offset: int):
    """The response for ``url`` from byte ``offset`` on (a Range request when offset > 0), or None when the server
    says the range is beyond the end of the file (HTTP 416)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; check the URL") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"{url}: cannot reach it ({e.reason}); check the URL and the network") from None
    except (OSError, ValueError) as e:
        raise DownloadError(f"{url}: cannot open it ({e}); check the URL") from None


def _resumed_at(response, offset: int) -> bool:
    """Whether ``response`` continues at byte ``offset`` (206 with a matching Content-Range)."""
    if getattr(response, "status", None) != 206:
        return False
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")


def _transfer(url: str, dest: Path, target: Path, expected: dict[str, str], progress: bool, resume: bool) -> None:
    """Write ``url`` to ``target`` (appending to what a resumed ``target`` holds) and check every digest."""
    offset = target.stat().st_size if resume and target.is_file() else 0
    response = _open(url, offset)
    if offset and (response is None or not _resumed_at(response, offset)):
        log.info("%s: the server does not continue at byte %d; downloading the whole file", url, offset)
        if response is None or getattr(response, "status", None) not in (200, None):  # None: a file:// URL
            if response is not None:
                response.close()
            response = _open(url, 0)
        offset = 0
    hashes = {algorithm: hashlib.new(algorithm) for algorithm in expected}
    if offset:
        with open(target, "rb") as f:
            while block := f.read(CHUNK):
                for h in hashes.values():
                    h.update(block)
        log.info("%s: resuming at byte %d", url, offset)
    again = "; run the same command again to resume" if resume else "; retry"
    with response:
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        with open(target, "ab" if offset else "wb") as f, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                     disable=not progress or None, leave=False) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise DownloadError(f"{url}: transfer failed after {received} bytes ({e!r}){again}") from None
                if not block:
                    break
                f.write(block)
                for h in hashes.values():
                    h.update(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise DownloadError(f"{url}: transfer ended after {received} of {total} bytes{again}")
    for algorithm, digest in expected.items():
        actual = hashes[algorithm].hexdigest()
        if actual != digest:
            target.unlink(missing_ok=True)
            raise ChecksumError(dest, algorithm, digest, actual, url=url)
    log.info("%s: downloaded %d bytes from %s", dest, received - offset, url)
