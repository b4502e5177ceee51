"""fetch_corpus against a real HTTP server on 127.0.0.1 that misbehaves on purpose.

The server speaks real HTTP/1.1 with byte ranges, so the resume, retry and verification paths
run exactly as they would against ftp.ebi.ac.uk, only faster (backoff=0.01 s).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis_rna.download import fetch_corpus, main, rnacentral_url
from genesis_rna.errors import ConfigError, DownloadError, InputFileError

FAST = {"backoff": 0.01, "progress": False}


@pytest.fixture(scope="module")
def payload() -> bytes:
    """A valid gzip of ~3 MiB, so the transfer spans several 1 MiB chunks."""
    raw = random.Random(7).randbytes(3 << 20)
    return gzip.compress(raw, compresslevel=1, mtime=0)


class CorpusServer:
    """Serves ``files`` by path; ``plan`` lists how to misbehave on successive requests.

    Plan steps: "ok", "cut" (announce the full length, send half, close), "500", "404",
    "ignore-range" (answer 200 with the whole file even when a range was asked for),
    "stall" (send half, then go silent longer than the client's timeout).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.plan: list[str] = []
        self.requests: list[dict[str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                with server.lock:
                    server.requests.append({k.lower(): v for k, v in self.headers.items()})
                    step = server.plan.pop(0) if server.plan else "ok"
                body = server.files.get(self.path)
                if body is None or step == "404":
                    return self._empty(404)
                if step == "500":
                    return self._empty(500)
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                start = 0
                wanted = self.headers.get("Range")
                if wanted and step != "ignore-range":
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                    if start >= len(body):
                        return self._empty(416, {"Content-Range": f"bytes */{len(body)}"})
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                rest = body[start:]
                self.send_header("Content-Length", str(len(rest)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if step in ("cut", "stall"):
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    if step == "stall":
                        time.sleep(1.5)
                    self.close_connection = True
                    return
                self.wfile.write(rest)

            def _empty(self, code, headers=None):
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[CorpusServer]:
    srv = CorpusServer()
    yield srv
    srv.close()


def leftovers(dest: Path) -> list[str]:
    """Everything a fetch left in dest's folder (there must be nothing after a failure)."""
    return sorted(p.name for p in dest.parent.iterdir())


def test_normal_download_writes_file_and_manifest(server, payload, tmp_path):
    server.files["/corpus.fasta.gz"] = payload
    dest, manifest = tmp_path / "out" / "corpus.fasta.gz", tmp_path / "out" / "manifest.json"
    url = server.url("/corpus.fasta.gz")

    record = fetch_corpus(url, dest, manifest, **FAST)

    assert dest.read_bytes() == payload
    on_disk = json.loads(manifest.read_text())
    assert on_disk == record
    assert record["source"] == url and record["url"] == url
    assert record["bytes"] == len(payload)
    assert record["sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["gzip_ok"] is True
    assert record["resumed"] == 0 and record["attempts"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["fetched_at"])
    assert leftovers(dest) == ["corpus.fasta.gz", "manifest.json"]


def test_cut_connection_resumes_with_range(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    server.plan = ["cut"]
    dest, manifest = tmp_path / "c.fasta.gz", tmp_path / "m.json"

    record = fetch_corpus(server.url("/c.fasta.gz"), dest, manifest, **FAST)

    assert dest.read_bytes() == payload
    assert record["resumed"] >= 1 and record["attempts"] == 2
    assert record["sha256"] == hashlib.sha256(payload).hexdigest()
    assert "range" not in server.requests[0]
    assert server.requests[1]["range"] == f"bytes={len(payload) // 2}-"
    # The resumed request is conditional on the file being unchanged.
    assert server.requests[1]["if-range"].startswith('"')
    assert leftovers(dest) == ["c.fasta.gz", "m.json"]


def test_server_without_range_support_restarts_from_zero(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    server.plan = ["cut", "ignore-range"]
    dest = tmp_path / "c.fasta.gz"

    record = fetch_corpus(server.url("/c.fasta.gz"), dest, tmp_path / "m.json", **FAST)

    assert server.requests[1]["range"]  # it asked to resume, the server sent everything
    assert dest.read_bytes() == payload
    assert record["resumed"] == 0
    assert record["sha256"] == hashlib.sha256(payload).hexdigest()


def test_stalled_transfer_times_out_and_resumes(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    server.plan = ["stall"]
    dest = tmp_path / "c.fasta.gz"

    record = fetch_corpus(server.url("/c.fasta.gz"), dest, tmp_path / "m.json", timeout=0.3, **FAST)

    assert dest.read_bytes() == payload
    assert record["resumed"] == 1
    assert server.requests[1]["range"] == f"bytes={len(payload) // 2}-"


def test_404_is_not_retried_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "x.fasta.gz"
    url = server.url("/missing.fasta.gz")

    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        fetch_corpus(url, dest, tmp_path / "m.json", **FAST)

    assert url in str(info.value)
    assert len(server.requests) == 1
    assert leftovers(dest) == []


def test_checksum_mismatch_is_refused(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    dest = tmp_path / "c.fasta.gz"
    wrong = "0" * 64

    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        fetch_corpus(server.url("/c.fasta.gz"), dest, tmp_path / "m.json", sha256=wrong, **FAST)

    assert wrong in str(info.value) and hashlib.sha256(payload).hexdigest() in str(info.value)
    assert leftovers(dest) == []


def test_expected_checksum_and_size_accepted(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    dest = tmp_path / "c.fasta.gz"
    good = hashlib.sha256(payload).hexdigest().upper()  # case does not matter

    record = fetch_corpus(
        server.url("/c.fasta.gz"), dest, tmp_path / "m.json", sha256=good, size=len(payload), **FAST
    )

    assert record["sha256"] == good.lower()


def test_size_mismatch_is_refused(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    dest = tmp_path / "c.fasta.gz"

    with pytest.raises(DownloadError, match=rf"expected {len(payload) + 1} bytes, got"):
        fetch_corpus(
            server.url("/c.fasta.gz"), dest, tmp_path / "m.json", size=len(payload) + 1, **FAST
        )
    assert leftovers(dest) == []


def test_500_then_200_succeeds_after_retry(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    server.plan = ["500"]
    dest = tmp_path / "c.fasta.gz"

    record = fetch_corpus(server.url("/c.fasta.gz"), dest, tmp_path / "m.json", **FAST)

    assert dest.read_bytes() == payload
    assert record["attempts"] == 2 and record["resumed"] == 0


def test_persistent_500_gives_up_after_retries(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    server.plan = ["500"] * 10
    dest = tmp_path / "c.fasta.gz"

    with pytest.raises(DownloadError, match=r"giving up after 3 tries.*HTTP 500"):
        fetch_corpus(server.url("/c.fasta.gz"), dest, tmp_path / "m.json", retries=2, **FAST)
    assert len(server.requests) == 3
    assert leftovers(dest) == []


def test_truncated_gzip_served_completely_is_refused(server, payload, tmp_path):
    truncated = payload[: len(payload) - 100]  # a complete HTTP body, a broken gzip
    server.files["/t.fasta.gz"] = truncated
    dest = tmp_path / "t.fasta.gz"

    with pytest.raises(DownloadError, match="truncated gzip"):
        fetch_corpus(server.url("/t.fasta.gz"), dest, tmp_path / "m.json", **FAST)
    assert len(server.requests) == 1  # a bad file is refused, not fetched again
    assert leftovers(dest) == []


def test_plain_fasta_is_not_gzip_tested(server, tmp_path):
    server.files["/r.fasta"] = b">a\nACGU\n"
    record = fetch_corpus(server.url("/r.fasta"), tmp_path / "r.fasta", tmp_path / "m.json", **FAST)
    assert record["gzip_ok"] is None and record["bytes"] == 8


def test_partial_file_from_killed_run_is_resumed(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    url = server.url("/c.fasta.gz")
    dest = tmp_path / "c.fasta.gz"
    half = len(payload) // 3
    (tmp_path / "c.fasta.gz.part").write_bytes(payload[:half])
    (tmp_path / "c.fasta.gz.part.json").write_text(json.dumps({"url": url}))

    record = fetch_corpus(url, dest, tmp_path / "m.json", **FAST)

    assert server.requests[0]["range"] == f"bytes={half}-"
    assert record["resumed"] == 1
    assert record["sha256"] == hashlib.sha256(payload).hexdigest()  # prefix was re-hashed
    assert dest.read_bytes() == payload
    assert leftovers(dest) == ["c.fasta.gz", "m.json"]


def test_partial_file_from_another_url_is_discarded(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    dest = tmp_path / "c.fasta.gz"
    (tmp_path / "c.fasta.gz.part").write_bytes(b"garbage from another file")
    (tmp_path / "c.fasta.gz.part.json").write_text(json.dumps({"url": "http://elsewhere/x"}))

    record = fetch_corpus(server.url("/c.fasta.gz"), dest, tmp_path / "m.json", **FAST)

    assert "range" not in server.requests[0]
    assert record["resumed"] == 0 and dest.read_bytes() == payload


def test_complete_partial_file_answered_416_is_finished(server, payload, tmp_path):
    server.files["/c.fasta.gz"] = payload
    url = server.url("/c.fasta.gz")
    dest = tmp_path / "c.fasta.gz"
    (tmp_path / "c.fasta.gz.part").write_bytes(payload)
    (tmp_path / "c.fasta.gz.part.json").write_text(json.dumps({"url": url}))

    record = fetch_corpus(url, dest, tmp_path / "m.json", **FAST)

    assert server.requests[0]["range"] == f"bytes={len(payload)}-"
    assert record["bytes"] == len(payload) and record["gzip_ok"] is True
    assert dest.read_bytes() == payload


def test_local_path_is_copied(payload, tmp_path):
    src = tmp_path / "in" / "local.fasta.gz"
    src.parent.mkdir()
    src.write_bytes(payload)
    dest = tmp_path / "out" / "corpus.fasta.gz"

    record = fetch_corpus(str(src), dest, tmp_path / "out" / "m.json", **FAST)

    assert dest.read_bytes() == payload
    assert record["source"] == str(src) and record["url"] == src.resolve().as_uri()
    assert record["sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["gzip_ok"] is True and record["attempts"] == 1 and record["resumed"] == 0
    assert leftovers(dest) == ["corpus.fasta.gz", "m.json"]

    again = fetch_corpus(src.resolve().as_uri(), tmp_path / "o2" / "c.gz", tmp_path / "o2" / "m")
    assert again["sha256"] == record["sha256"]


def test_missing_local_path_names_the_file(tmp_path):
    missing = tmp_path / "nope.fasta"
    with pytest.raises(InputFileError, match="nope.fasta.*not found") as info:
        fetch_corpus(str(missing), tmp_path / "out" / "c.fasta", tmp_path / "out" / "m.json")
    assert info.value.path == str(missing)
    assert not (tmp_path / "out" / "c.fasta").exists()


def test_truncated_local_gzip_is_refused(payload, tmp_path):
    src = tmp_path / "bad.fasta.gz"
    src.write_bytes(payload[:1000])
    dest = tmp_path / "out" / "c.fasta.gz"
    with pytest.raises(InputFileError, match="bad.fasta.gz.*truncated gzip"):
        fetch_corpus(str(src), dest, tmp_path / "out" / "m.json", **FAST)
    assert leftovers(dest) == []


def test_rnacentral_url():
    base = "https://ftp.ebi.ac.uk/pub/databases/RNAcentral/releases"
    assert (
        rnacentral_url(25, "sequences/rnacentral_active.fasta.gz")
        == f"{base}/25.0/sequences/rnacentral_active.fasta.gz"
    )
    assert (
        rnacentral_url("24.0", "sequences/by-database/rfam.fasta")
        == f"{base}/24.0/sequences/by-database/rfam.fasta"
    )
    assert rnacentral_url("7", "md5/md5.tsv.gz") == f"{base}/7.0/md5/md5.tsv.gz"


@pytest.mark.parametrize("release", [0, -1, "x", "25.5", 2.5, True, None, ""])
def test_rnacentral_url_rejects_bad_release(release):
    with pytest.raises(ConfigError, match="corpus.rnacentral.release"):
        rnacentral_url(release, "sequences/rnacentral_active.fasta.gz")


@pytest.mark.parametrize(
    "file", ["", "/etc/passwd", "../24.0/x.fasta", "sequences/../../x", "a//b", "http://x/y"]
)
def test_rnacentral_url_rejects_bad_file(file):
    with pytest.raises(ConfigError, match="corpus.rnacentral.file"):
        rnacentral_url(25, file)


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="corpus.sha256"):
        fetch_corpus("x", tmp_path / "c", tmp_path / "m", sha256="abc")
    with pytest.raises(ConfigError, match="corpus.source"):
        fetch_corpus("gopher://host/x", tmp_path / "c", tmp_path / "m")
    with pytest.raises(ConfigError, match="corpus.size"):
        fetch_corpus("x", tmp_path / "c", tmp_path / "m", size="12")


def test_cli_success_and_clean_error(server, payload, tmp_path, capsys):
    server.files["/c.fasta.gz"] = payload
    dest, manifest = tmp_path / "c.fasta.gz", tmp_path / "m.json"
    args = [server.url("/c.fasta.gz"), str(dest), "--manifest", str(manifest), "--no-progress"]

    assert main([*args, "--size", str(len(payload)), "--backoff", "0.01"]) == 0
    assert json.loads(manifest.read_text())["bytes"] == len(payload)

    bad = [server.url("/gone.fasta.gz"), str(tmp_path / "g.fasta.gz"), "--manifest", "m2.json"]
    assert main([*bad, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "HTTP 404" in err and "Traceback" not in err
