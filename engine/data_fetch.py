"""Download the credit-card CSV once, verified by its SHA-256 (``tormentor-engine data fetch``).

The file is written to a temporary file inside the destination folder, hashed while it
streams, and renamed over ``creditcard.csv`` only when the digest matches, so a partial
or corrupted download never takes the place of the data set. Only :mod:`urllib` is used.

>>> DEFAULT_SHA256[:12]
'bf15b02eb5a2'
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .data import CSV_NAME

__all__ = [
    "ChecksumMismatchError",
    "DEFAULT_SHA256",
    "DEFAULT_URL",
    "DownloadError",
    "FetchError",
    "fetch_credit",
    "sha256_of_file",
]

#: Where the CSV is published (public repository DistributedML/TorML).
DEFAULT_URL = (
    "https://raw.githubusercontent.com/DistributedML/TorML/master/ML/data/credit/creditcard.csv"
)
#: SHA-256 of the published ``creditcard.csv`` (hex).
DEFAULT_SHA256 = "bf15b02eb5a2c34f01f6d071083ecb7b8f4e803a4280a7ef497903d84c791c48"

_CHUNK_BYTES = 1 << 16
_MANUAL_HINT = (
    "To supply it by hand, download {url} with any tool, check that its SHA-256 is "
    "{sha256}, and put it at {target} or in a folder named by TORMENTOR_DATA."
)


class FetchError(RuntimeError):
    """Base class: the data set could not be fetched."""


class DownloadError(FetchError):
    """The server could not be reached, refused the request or the transfer broke."""


class ChecksumMismatchError(FetchError):
    """The downloaded bytes do not have the expected SHA-256; nothing was kept.

    Attributes
    ----------
    expected, actual : str
        The expected and the computed hex digests.
    """

    def __init__(self, expected: str, actual: str, message: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message)


def sha256_of_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 64 KiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hex_digest(sha256: str) -> str:
    if not isinstance(sha256, str):
        raise TypeError(f"sha256 must be a str, got {type(sha256).__name__}")
    digest = sha256.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("sha256 must be 64 hexadecimal digits")
    return digest


def fetch_credit(
    dest_dir: str | os.PathLike[str],
    *,
    url: str = DEFAULT_URL,
    sha256: str = DEFAULT_SHA256,
    timeout_s: float = 60.0,
) -> Path:
    """Download ``creditcard.csv`` into ``dest_dir`` unless a verified copy is there.

    Parameters
    ----------
    dest_dir : str or path-like
        Folder to hold ``creditcard.csv``; created (with parents) if missing. The CLI
        passes :func:`tormentor.engine.data.default_data_dir`.
    url : str
        ``http://`` or ``https://`` address of the file.
    sha256 : str
        Expected hex SHA-256 of the file.
    timeout_s : float
        Socket timeout in seconds for connecting and for each read (> 0).

    Returns
    -------
    pathlib.Path
        Path of the verified file (``dest_dir / "creditcard.csv"``).

    Raises
    ------
    DownloadError
        If the server is unreachable, answers with an HTTP error, or the transfer fails;
        the message says how to supply the file by hand.
    ChecksumMismatchError
        If the downloaded bytes have another digest; the temporary file is deleted and
        an existing ``creditcard.csv`` is left as it was.
    ValueError
        On a malformed ``sha256``, a non-HTTP ``url`` or a non-positive ``timeout_s``.
    """
    expected = _check_hex_digest(sha256)
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// address, got {url!r}")
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    dest = Path(dest_dir).expanduser()
    target = dest / CSV_NAME
    if target.is_file() and sha256_of_file(target) == expected:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    hint = _MANUAL_HINT.format(url=url, sha256=expected, target=target)

    handle, temp_name = tempfile.mkstemp(prefix=f".{CSV_NAME}.", suffix=".part", dir=dest)
    temp_path = Path(temp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "tormentor-engine"})
                with urllib.request.urlopen(request, timeout=timeout_s) as response:
                    for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"{url} answered HTTP {exc.code}. {hint}") from exc
            except (
                urllib.error.URLError,
                TimeoutError,
                ConnectionError,
                http.client.HTTPException,
            ) as exc:
                reason = getattr(exc, "reason", exc)
                raise DownloadError(f"could not download {url} ({reason}). {hint}") from exc
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumMismatchError(
                expected,
                actual,
                f"downloaded file from {url} has SHA-256 {actual}, expected {expected}; "
                f"it was deleted. {hint}",
            )
        os.replace(temp_path, target)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return target
