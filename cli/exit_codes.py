"""Exit codes of ``tormentor-engine``, in ranges per component, each with its help line.

Only :mod:`tormentor.cli` turns exceptions into these; library code raises exceptions.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "HELP"]


class ExitCode(IntEnum):
    """Process exit status: 0 is success.

    Ranges: 1-9 general, 10-19 config, 20-29 data, 30-39 NATS, 40-49 Tor, 50-59 a
    client's outcome.
    """

    OK = 0
    INTERNAL = 1
    USAGE = 2
    INTERRUPTED = 3
    CONFIG_INVALID = 10
    CONFIG_NOT_FOUND = 11
    DATA_MISSING = 20
    DATA_CHECKSUM = 21
    DATA_DOWNLOAD = 22
    DATA_FORMAT = 23
    NATS_START = 30
    NATS_CONNECT = 31
    BROKER_UNREACHABLE = 32
    NATS_PERMISSION = 33
    NATS_PAYLOAD = 34
    TOR_MISSING = 40
    TOR_BOOTSTRAP = 41
    TOR_ONION = 42
    TOR_PROCESS = 43
    CLIENT_REJECTED = 50
    CLIENT_BUDGET_SPENT = 51
    CLIENT_EVICTED = 52
    CURATOR_REJECTED = 53


HELP: dict[ExitCode, str] = {
    ExitCode.OK: "finished normally",
    ExitCode.INTERNAL: "unexpected internal error (a bug: please report it with the traceback)",
    ExitCode.USAGE: "bad command-line usage",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); everything started was stopped",
    ExitCode.CONFIG_INVALID: "the config has invalid keys or values (each is listed with its path)",
    ExitCode.CONFIG_NOT_FOUND: "the config file does not exist",
    ExitCode.DATA_MISSING: (
        "creditcard.csv not found: run `tormentor-engine data fetch` or set TORMENTOR_DATA"
    ),
    ExitCode.DATA_CHECKSUM: "the downloaded data does not match its SHA-256",
    ExitCode.DATA_DOWNLOAD: "the data could not be downloaded (offline?)",
    ExitCode.DATA_FORMAT: "the data file is not the expected CSV",
    ExitCode.NATS_START: "nats-server could not be started",
    ExitCode.NATS_CONNECT: "could not connect to the NATS server",
    ExitCode.BROKER_UNREACHABLE: "the broker did not answer in time (gone, or not started)",
    ExitCode.NATS_PERMISSION: "the NATS server refused a subject (permissions)",
    ExitCode.NATS_PAYLOAD: (
        "a message exceeded the NATS server's max_payload (raise transport.max_payload_bytes)"
    ),
    ExitCode.TOR_MISSING: "tor is not installed (Debian/Ubuntu: apt-get install tor)",
    ExitCode.TOR_BOOTSTRAP: "tor did not bootstrap in time",
    ExitCode.TOR_ONION: "the onion service could not be published or reached",
    ExitCode.TOR_PROCESS: "a tor process failed",
    ExitCode.CLIENT_REJECTED: "the broker refused the client (the error code is printed)",
    ExitCode.CLIENT_BUDGET_SPENT: "the client stopped: one more step would exceed its privacy budget",
    ExitCode.CLIENT_EVICTED: "the broker evicted the client after repeated RONI penalties",
    ExitCode.CURATOR_REJECTED: "the broker refused the curator's task or request (the error code is printed)",
}
