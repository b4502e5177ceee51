"""Fetch the raw corpus (a local file or an http(s)/ftp URL) and record a manifest.

RNAcentral's whole-release FASTA is many gigabytes and is served without a published
checksum, so the transfer has to survive flaky connections and prove its own integrity:

- bytes stream in 1 MiB chunks to ``<dest>.part`` and are hashed while written, so memory
  stays flat whatever the file size;
- connection errors, timeouts, 5xx/429 answers and short reads (fewer bytes than the
  announced Content-Length) are retried with exponential backoff, and an interrupted HTTP
  transfer resumes with ``Range: bytes=N-`` instead of starting again;
- the finished file is checked against the expected size and sha256 when given and, for
  ``.gz`` names, decompressed once end to end (which checks gzip's own CRC32 and length);
- only then is it renamed onto ``dest`` and the manifest written, both atomically. A failed or
  refused download leaves nothing at ``dest`` and removes its partial file.

Only the standard library (urllib) and tqdm are used, so the fetch step adds no dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from genesis_rna.atomic import atomic_path, write_json
from genesis_rna.errors import ConfigError, DownloadError, GenesisError, InputFileError

CHUNK = 1 << 20
URL_SCHEMES = ("http", "https", "ftp")
RNACENTRAL_RELEASES = "https://ftp.ebi.ac.uk/pub/databases/RNAcentral/releases"
USER_AGENT = "genesis-rna-fetch/1 (+python-urllib)"
# Longest wait between two tries, whatever backoff and try count say.
MAX_BACKOFF_S = 120.0

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def rnacentral_url(release: int | str, file: str) -> str:
    """URL of ``file`` under RNAcentral release ``release`` on the EBI FTP server (over https).

    ``file`` is relative to the release folder, e.g. ``sequences/rnacentral_active.fasta.gz``
    or ``sequences/by-database/rfam.fasta``.
    """
    # RNAcentral folders are named "<N>.0"; accept 25, "25" and "25.0" for the same release.
    match = re.fullmatch(r"0*([1-9]\d*)(?:\.0)?", str(release).strip())
    if isinstance(release, bool) or not isinstance(release, int | str) or not match:
        raise ConfigError(
            "corpus.rnacentral.release",
            f"expected a positive release number such as 25, got {release!r}",
        )
    number = int(match.group(1))
    if not isinstance(file, str) or not file.strip():
        raise ConfigError("corpus.rnacentral.file", f"expected a file name, got {file!r}")
    parts = file.strip().split("/")
    if file.startswith("/") or "\\" in file or "://" in file:
        raise ConfigError(
            "corpus.rnacentral.file",
            f"must be a path relative to the release folder, got {file!r}",
        )
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(
            "corpus.rnacentral.file",
            f"must not contain empty, '.' or '..' parts, got {file!r}",
        )
    quoted = "/".join(urllib.parse.quote(p) for p in parts)
    return f"{RNACENTRAL_RELEASES}/{number}.0/{quoted}"


def is_url(source: str) -> bool:
    """True for the remote schemes this module downloads (http, https, ftp)."""
    return urllib.parse.urlsplit(source).scheme.lower() in URL_SCHEMES


def fetch_corpus(
    source: str,
    dest: Path,
    manifest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 5,
    timeout: float = 60,
    backoff: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Copy or download ``source`` to ``dest``, verify it, and write ``manifest`` (JSON).

    ``source`` is a local path (or ``file://`` URL) or an http(s)/ftp URL. ``retries`` is how
    many failed tries in a row, without new bytes, are tolerated before giving up (a try that
    extends the partial file resets the count, so a long transfer over a flaky link gets
    through). Returns the manifest dict.
    """
    dest = Path(dest)
    manifest = Path(manifest)
    expected_sha = _check_sha256(sha256)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ConfigError("corpus.size", f"expected a non-negative byte count, got {size!r}")
    if retries < 0:
        raise ConfigError("corpus.retries", f"must be >= 0, got {retries!r}")
    if not timeout > 0:
        raise ConfigError("corpus.timeout", f"must be > 0 seconds, got {timeout!r}")

    parts = urllib.parse.urlsplit(source)
    scheme = parts.scheme.lower()
    # gzip is tested when either name says .gz: the destination may be named freely.
    gz = _path_of(source).endswith(".gz") or dest.name.endswith(".gz")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if scheme in URL_SCHEMES:
        if not parts.netloc:
            raise ConfigError("corpus.source", f"URL without a host: {source!r}")
        part = dest.with_name(dest.name + ".part")
        try:
            stats = _download(source, part, retries, timeout, backoff, progress)
            _verify(part, stats, expected_sha, size, gz, progress, dest.name)
            _fsync(part)
            os.replace(part, dest)
        except Exception as exc:
            # Failed or refused: leave nothing behind. (Ctrl-C and SIGTERM skip this on
            # purpose, so the next run can resume the partial file.)
            _unlink(part)
            _unlink(_sidecar(part))
            if isinstance(exc, _Mismatch):
                raise DownloadError(f"{source}: {exc}") from None
            raise
        _unlink(_sidecar(part))
    elif scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive, C:\...
        if scheme == "file":
            path = Path(urllib.request.url2pathname(parts.path))
        else:
            path = Path(source)
        if not path.is_file():
            raise InputFileError(path, "corpus source file not found")
        try:
            with atomic_path(dest) as tmp:
                stats = _copy_local(path, tmp, progress)
                _verify(tmp, stats, expected_sha, size, gz, progress, dest.name)
        except _Mismatch as exc:
            raise InputFileError(path, str(exc)) from None
        stats["url"] = path.resolve().as_uri()
    else:
        raise ConfigError(
            "corpus.source",
            f"unsupported URL scheme {scheme!r} in {source!r}; use a local path or one of "
            + ", ".join(f"{s}://" for s in URL_SCHEMES),
        )

    record = {
        "source": source,
        "url": stats["url"],
        "bytes": stats["bytes"],
        "sha256": stats["sha256"],
        "gzip_ok": stats["gzip_ok"],
        "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "resumed": stats["resumed"],
        "attempts": stats["attempts"],
    }
    write_json(manifest, record)
    return record


# --- transfer -------------------------------------------------------------------------------


class _Retryable(Exception):
    """A try that failed in a way worth trying again (network, 5xx, 429, short read)."""


class _Restart(_Retryable):
    """The partial file cannot be resumed (server changed the file or refused the range)."""


def _download(
    url: str, part: Path, retries: int, timeout: float, backoff: float, progress: bool
) -> dict[str, Any]:
    """Download ``url`` into ``part`` with retries and HTTP range resume; return stats."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    sidecar = _sidecar(part)
    # A partial file left by an earlier, killed run is resumed only if it came from this URL;
    # its validator (ETag / Last-Modified) goes into If-Range so a changed file restarts.
    state = _read_sidecar(sidecar)
    if part.exists() and (state.get("url") != url or scheme not in ("http", "https")):
        _unlink(part)
    if not part.exists():
        state = {}
    attempts = resumed = failures = 0
    best = part.stat().st_size if part.exists() else 0
    while True:
        attempts += 1
        try:
            result = _one_try(url, part, sidecar, state, timeout, progress)
        except _Retryable as exc:
            if isinstance(exc, _Restart):
                _unlink(part)
                state = {}
            reason = str(exc)
        else:
            resumed += result.pop("resumed")
            result.update(attempts=attempts, resumed=resumed)
            return result
        have = part.stat().st_size if part.exists() else 0
        if have > best:
            best, failures = have, 0  # progress: this try was not wasted
        else:
            failures += 1
        if failures > retries:
            raise DownloadError(
                f"{url}: giving up after {attempts} tries ({failures} in a row without "
                f"progress): {reason}"
            )
        delay = min(backoff * 2 ** max(failures - 1, 0), MAX_BACKOFF_S)
        print(
            f"download of {url} failed ({reason}); try {attempts + 1} in {delay:.2f} s"
            + (f", resuming at byte {have}" if have and scheme != "ftp" else ""),
            file=sys.stderr,
        )
        time.sleep(delay)


def _one_try(
    url: str, part: Path, sidecar: Path, state: dict, timeout: float, progress: bool
) -> dict[str, Any]:
    """One request: resume or restart ``part`` and stream the body into it."""
    is_http = urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")
    offset = part.stat().st_size if (is_http and part.exists()) else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.get("validator"):
            headers["If-Range"] = state["validator"]
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        return _http_error(url, exc, offset, part, state)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(_describe(exc)) from exc

    with response:
        status = getattr(response, "status", None)
        length = _int_header(response.headers.get("Content-Length"))
        resumed = 0
        if offset and status == 206:
            start, _end, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise _Restart(f"server resumed at byte {start}, not {offset}")
            if state.get("total") is not None and total not in (None, state["total"]):
                raise _Restart(f"file size changed on the server ({state['total']} -> {total})")
            resumed = 1
        elif status is not None and status != 200 and is_http:
            raise _Retryable(f"unexpected HTTP status {status}")
        else:
            # Full body: a server without range support, a changed file (If-Range), or a
            # fresh start. Whatever is in the partial file is discarded.
            offset = 0
            total = length
        expected = offset + length if length is not None else None
        state.update(url=url, total=total if total is not None else expected)
        validator = _validator(response.headers) if is_http else None
        if validator:
            state["validator"] = validator
        if is_http:
            _write_sidecar(sidecar, state)
        digest = hashlib.sha256()
        if offset:
            _hash_prefix(part, digest, progress)
        written = offset
        with (
            open(part, "ab" if offset else "wb") as out,
            _bar(expected, offset, f"fetch {part.name[: -len('.part')]}", progress) as bar,
        ):
            # read1 hands over whatever has arrived (up to CHUNK), so a timeout loses nothing
            # already received and the resume starts exactly where the bytes stopped.
            read = getattr(response, "read1", response.read)
            try:
                while chunk := read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise _Retryable(f"connection lost at byte {written}: {_describe(exc)}") from exc
        if expected is not None and written < expected:
            raise _Retryable(f"short read: got {written} of {expected} bytes")
        return {
            "url": response.geturl(),
            "bytes": written,
            "sha256": digest.hexdigest(),
            "resumed": resumed,
        }


def _http_error(
    url: str, exc: urllib.error.HTTPError, offset: int, part: Path, state: dict
) -> dict[str, Any]:
    """Turn an HTTP error answer into a retry, a restart, a finished file or a DownloadError."""
    if exc.code == 416 and offset:
        # Range not satisfiable: usually the partial file already holds the whole file.
        match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range", "") or "")
        if match and int(match.group(1)) == offset:
            digest = hashlib.sha256()
            _hash_prefix(part, digest, progress=False)
            return {"url": url, "bytes": offset, "sha256": digest.hexdigest(), "resumed": 1}
        raise _Restart(f"HTTP 416 for range starting at byte {offset}")
    if exc.code == 429 or exc.code >= 500:
        raise _Retryable(f"HTTP {exc.code} {exc.reason}")
    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason} (not retried)")


def _copy_local(path: Path, out_path: Path, progress: bool) -> dict[str, Any]:
    """Stream-copy a local file, hashing as it goes."""
    digest = hashlib.sha256()
    written = 0
    try:
        total = path.stat().st_size
        with (
            open(path, "rb") as src,
            open(out_path, "wb") as out,
            _bar(total, 0, f"copy {path.name}", progress) as bar,
        ):
            while chunk := src.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except OSError as exc:
        raise InputFileError(path, f"cannot read corpus source: {exc}") from exc
    return {"bytes": written, "sha256": digest.hexdigest(), "resumed": 0, "attempts": 1}


# --- verification ---------------------------------------------------------------------------


class _Mismatch(Exception):
    """The file arrived but is not the expected one; the caller names the source."""


def _verify(
    path: Path,
    stats: dict[str, Any],
    expected_sha: str | None,
    size: int | None,
    gz: bool,
    progress: bool,
    label: str,
) -> None:
    """Check size, sha256 and (when ``gz``) gzip integrity; set ``stats['gzip_ok']``."""
    actual = path.stat().st_size
    assert actual == stats["bytes"], "bytes counted while streaming must match the file"
    if size is not None and actual != size:
        raise _Mismatch(f"size mismatch: expected {size} bytes, got {actual}")
    if expected_sha is not None and stats["sha256"] != expected_sha:
        raise _Mismatch(f"sha256 mismatch: expected {expected_sha}, got {stats['sha256']}")
    stats["gzip_ok"] = None  # not a gzip name: nothing to test
    if gz:
        problem = _gzip_problem(path, progress, label)
        if problem:
            raise _Mismatch(f"corrupt or truncated gzip ({problem})")
        stats["gzip_ok"] = True


def _gzip_problem(path: Path, progress: bool, label: str) -> str | None:
    """Decompress ``path`` end to end (flat memory); return what is wrong, or None."""
    try:
        with (
            open(path, "rb") as raw,
            gzip.GzipFile(fileobj=raw, mode="rb") as gz,
            _bar(path.stat().st_size, 0, f"gunzip -t {label}", progress) as bar,
        ):
            seen = 0
            while gz.read(CHUNK):
                now = raw.tell()
                bar.update(now - seen)
                seen = now
    except (OSError, EOFError, zlib.error) as exc:
        return str(exc) or type(exc).__name__
    return None


# --- small helpers --------------------------------------------------------------------------


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not _SHA256.match(sha256.strip()):
        raise ConfigError("corpus.sha256", f"expected 64 hexadecimal digits, got {sha256!r}")
    return sha256.strip().lower()


def _path_of(source: str) -> str:
    return urllib.parse.urlsplit(source).path if "://" in source else source


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_sidecar(sidecar: Path) -> dict:
    try:
        state = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_sidecar(sidecar: Path, state: dict) -> None:
    write_json(sidecar, state)


def _validator(headers) -> str | None:
    """A strong validator usable in If-Range (weak ETags are not allowed there)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def _int_header(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def _hash_prefix(part: Path, digest, progress: bool) -> None:
    """Feed the bytes already in the partial file to ``digest`` (resume keeps one hash)."""
    with (
        open(part, "rb") as fh,
        _bar(part.stat().st_size, 0, f"rehash {part.name}", progress) as bar,
    ):
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason if reason is not None else exc}"


@contextlib.contextmanager
def _bar(total: int | None, initial: int, desc: str, progress: bool) -> Iterator[tqdm]:
    with tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        yield bar


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genesis_rna.download",
        description="Copy or download a corpus file, verify it, and write a JSON manifest.",
    )
    parser.add_argument("source", help="local path or http(s)/ftp URL")
    parser.add_argument("dest", type=Path, help="where the file goes")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest JSON to write")
    parser.add_argument("--sha256", help="expected sha256; a mismatch is refused")
    parser.add_argument("--size", type=int, help="expected size in bytes")
    parser.add_argument("--retries", type=int, default=5, help="tries in a row without progress")
    parser.add_argument("--timeout", type=float, default=60, help="socket timeout in seconds")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay, seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        record = fetch_corpus(
            args.source,
            args.dest,
            args.manifest,
            sha256=args.sha256,
            size=args.size,
            retries=args.retries,
            timeout=args.timeout,
            backoff=args.backoff,
            progress=not args.no_progress,
        )
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dest}: {record['bytes']} bytes, sha256 {record['sha256']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
