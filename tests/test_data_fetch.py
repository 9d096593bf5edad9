"""Tests for tormentor.engine.data_fetch against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tormentor.engine.data import CSV_NAME
from tormentor.engine.data_fetch import (
    DEFAULT_SHA256,
    DEFAULT_URL,
    ChecksumMismatchError,
    DownloadError,
    fetch_credit,
    sha256_of_file,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared_folder() -> Path:
    folder = os.environ.get("TORMENTOR_DATA")
    base = Path(folder) if folder else REPO_ROOT.parent / "shared" / "data" / "credit"
    if not (base / CSV_NAME).is_file():
        pytest.skip("creditcard.csv not found: set TORMENTOR_DATA or run `tormentor-engine data fetch`")
    return base


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def serve() -> Iterator:
    """Start a file server for a folder on 127.0.0.1 (free port); returns its base URL."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != CSV_NAME)


def test_downloads_and_verifies(serve, shared_folder: Path, tmp_path: Path) -> None:
    base = serve(shared_folder)
    dest = tmp_path / "cache" / "credit"
    path = fetch_credit(dest, url=f"{base}/{CSV_NAME}", timeout_s=10)
    assert path == dest / CSV_NAME
    assert sha256_of_file(path) == DEFAULT_SHA256
    assert leftovers(dest) == []


def test_checksum_mismatch_keeps_nothing(serve, shared_folder: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    corrupted = bytearray((shared_folder / CSV_NAME).read_bytes())
    corrupted[-3] ^= 0x01
    (served / CSV_NAME).write_bytes(bytes(corrupted))
    base = serve(served)
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumMismatchError) as info:
        fetch_credit(dest, url=f"{base}/{CSV_NAME}", timeout_s=10)
    assert info.value.expected == DEFAULT_SHA256
    assert info.value.actual != DEFAULT_SHA256
    assert "expected" in str(info.value) and "TORMENTOR_DATA" in str(info.value)
    assert not (dest / CSV_NAME).exists()
    assert leftovers(dest) == []


def test_mismatch_leaves_an_existing_file_untouched(serve, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / CSV_NAME).write_bytes(b"new bytes")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / CSV_NAME).write_bytes(b"old bytes")
    with pytest.raises(ChecksumMismatchError):
        fetch_credit(dest, url=f"{serve(served)}/{CSV_NAME}", timeout_s=10)
    assert (dest / CSV_NAME).read_bytes() == b"old bytes"
    assert leftovers(dest) == []


def test_wrong_existing_file_is_replaced(serve, shared_folder: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / CSV_NAME).write_bytes(b"truncated")
    path = fetch_credit(dest, url=f"{serve(shared_folder)}/{CSV_NAME}", timeout_s=10)
    assert sha256_of_file(path) == DEFAULT_SHA256


def test_unreachable_server_says_how_to_supply_the_file(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/{CSV_NAME}"
    with pytest.raises(DownloadError) as info:
        fetch_credit(tmp_path, url=url, timeout_s=5)
    message = str(info.value)
    assert "could not download" in message
    assert "TORMENTOR_DATA" in message and DEFAULT_SHA256 in message
    assert leftovers(tmp_path) == []


def test_http_error_is_a_download_error(serve, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_credit(dest, url=f"{serve(empty)}/{CSV_NAME}", timeout_s=10)
    assert leftovers(dest) == []


def test_already_present_needs_no_network(shared_folder: Path, tmp_path: Path) -> None:
    shutil.copyfile(shared_folder / CSV_NAME, tmp_path / CSV_NAME)
    before = (tmp_path / CSV_NAME).stat().st_mtime_ns
    url = f"http://127.0.0.1:{closed_port()}/{CSV_NAME}"  # would fail if contacted
    path = fetch_credit(tmp_path, url=url, timeout_s=5)
    assert path == tmp_path / CSV_NAME
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sha256": "abc"},
        {"sha256": "z" * 64},
        {"url": "ftp://example.org/creditcard.csv"},
        {"url": "file:///etc/passwd"},
        {"timeout_s": 0},
    ],
)
def test_rejects_bad_parameters(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        fetch_credit(tmp_path, **kwargs)


def test_default_url_points_at_the_published_file() -> None:
    assert DEFAULT_URL.startswith("https://raw.githubusercontent.com/DistributedML/TorML/")
    assert DEFAULT_URL.endswith("/ML/data/credit/creditcard.csv")
