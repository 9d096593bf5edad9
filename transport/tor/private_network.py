"""A private Tor network on 127.0.0.1: authorities, relays, an onion-service tor, a client tor.

For tests and local experiments (mode ``private``): the broker's onion service and every
client's circuits run over real tor daemons, with no internet. The recipe and its
timings are in ``docs/tor-private-network.md``; in short:

1. Keys: per authority, ``tor-gencert`` (v3 identity, signing key, certificate) and
   ``tor --list-fingerprint`` (relay identity). Every torrc gets one ``DirAuthority`` line
   per authority.
2. Start every tor at once. Authorities and relays are online; the onion-service and
   client tors start with ``DisableNetwork 1``. One control connection per tor, kept open
   until teardown (it owns the tor).
3. Two-part readiness gate: (a) an authority's consensus (``GETINFO ns/all``) lists every
   relay with Running, Valid, Stable, Fast, Guard and HSDir; (b) every non-authority
   relay holds every relay's microdescriptor (``GETINFO md/all``). Releasing the clients
   earlier makes them fetch a partial consensus or get 404s, costing 10 s or more.
4. ``SETCONF DisableNetwork=0`` on the onion-service and client tors, then wait for both
   to reach 100 %.

Fast-bootstrap settings: ``TestingTorNetwork 1``; Stable and Fast granted to every relay
from the first vote (``AuthDirVoteStableGuaranteeMinUptime 0``,
``AuthDirVoteStableGuaranteeMTBF 0``, ``AuthDirFastGuarantee 1 bytes``); 5 s then 10 s
voting; ``GeoIPFile ""`` (GeoIP parsing costs seconds of CPU per tor); ``Schedulers
Vanilla`` (10-20x lower loopback latency than KIST). Onion services need at least 4
relays in all (authorities count), since rendezvous circuits have 4 hops.

Ports: control and SOCKS ports are ``auto`` (the OS picks them, tor reports them), and so
are the plain relays' ORPorts. Only the authorities' ORPort and DirPort must be known
before launch (every ``DirAuthority`` line names them): they are taken from free ports
the OS hands out, and the whole start is retried with new ports if one was taken in the
meantime.

Example::

    with PrivateTorNetwork(tmp_path / "tor") as net:          # about 10-30 s
        service = net.publish_onion({4222: ("127.0.0.1", nats_port)},
                                    key_file=state / "broker.key")
        forwarder = SocksForwarder(service.address, 4222, net.socks_host, net.socks_port,
                                   new_identity=net.new_identity)
        ...
    # every tor stopped and reaped here
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .control import TorControl
from .errors import TorBootstrapTimeout, TorControlError, TorProcessError
from .onion import OnionService, publish_onion
from .process import TorProcess, find_program, require_tor_version, stop_tors

__all__ = ["BootstrapTimings", "PrivateTorNetwork"]

#: Flags every relay needs in the consensus before clients are released.
REQUIRED_FLAGS = frozenset({"Running", "Valid", "Stable", "Fast", "Guard", "HSDir"})
#: Smallest relay count (authorities + relays) that can carry onion-service circuits.
MIN_TOTAL_RELAYS = 4
ONION_SERVICE = "onion-service"
CLIENT = "client"
_PORT_RETRIES = 3
_KEYGEN_TIMEOUT_S = 120.0
_CONTROL_PORT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BootstrapTimings:
    """Where the time of :meth:`PrivateTorNetwork.start` and ``wait_ready`` went, in seconds.

    Attributes
    ----------
    keys_s : float
        Key generation for the authorities (``tor-gencert`` and ``--list-fingerprint``).
    launch_s : float
        All tors started and their control connections open.
    consensus_s : float
        The two-part gate: full consensus and microdescriptors on every relay.
    ready_s : float or None
        From releasing the onion-service and client tors to both at 100 %.
    total_s : float or None
        From the start of :meth:`~PrivateTorNetwork.start` to ready.
    attempts : int
        Launches needed (more than 1 only if an authority port was taken).
    """

    keys_s: float
    launch_s: float
    consensus_s: float
    ready_s: float | None
    total_s: float | None
    attempts: int


@dataclass(frozen=True)
class _Node:
    name: str
    role: str  # "authority", "relay", "onion-service", "client"
    data_dir: Path
    or_port: int | None = None
    dir_port: int | None = None


class _PortTaken(Exception):
    """An authority could not bind its pre-chosen port; retry with new ones."""


def _free_ports(count: int) -> list[int]:
    """Ports the OS hands out as free now (held together, so all distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _parse_consensus_flags(ns_all: str) -> dict[str, set[str]]:
    """Map nickname -> flags from ``GETINFO ns/all`` ("r <nick> ..." then "s <flags>")."""
    flags: dict[str, set[str]] = {}
    nickname: str | None = None
    for line in ns_all.splitlines():
        if line.startswith("r "):
            parts = line.split()
            nickname = parts[1] if len(parts) > 1 else None
        elif line.startswith("s ") and nickname is not None:
            flags[nickname] = set(line.split()[1:])
    return flags


class PrivateTorNetwork:
    """A private Tor network on 127.0.0.1, owned by this process; a context manager.

    ``with PrivateTorNetwork(workdir) as net:`` starts the network and waits until the
    onion-service and client tors are at 100 % (:meth:`start` then :meth:`wait_ready`);
    leaving the block stops and reaps every tor (:meth:`close`). Methods are blocking
    (stem is synchronous); from asyncio call them with ``asyncio.to_thread``.

    Parameters
    ----------
    workdir : str or os.PathLike
        Folder for every tor's DataDirectory, torrc and logs (``00-auth0``, ...,
        ``NN-client``); created if missing. Must not already hold a network. Left in place
        after :meth:`close` (the logs help debugging); the caller removes it.
    relays : int, optional
        Non-authority relays; default 2.
    authorities : int, optional
        Directory authorities, >= 1; default 3. ``authorities + relays`` must be >= 4.
    bootstrap_timeout_s : float, optional
        Seconds allowed from the launch of the tors (after key generation, which has its
        own 120 s limit) until the onion-service and client tors are at 100 %; default 120.
    scheduler : str or None, optional
        Tor ``Schedulers`` option; default ``"Vanilla"``. None keeps tor's default (KIST).
    tor_binary, tor_gencert_binary : str or os.PathLike, optional
        Bare names (looked up in PATH) or paths; default ``"tor"`` and ``"tor-gencert"``.
    stop_timeout_s : float, optional
        Seconds between SIGTERM and SIGKILL at teardown; default 10.

    Attributes
    ----------
    workdir : pathlib.Path
    socks_host : str
        ``"127.0.0.1"``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        relays: int = 2,
        authorities: int = 3,
        bootstrap_timeout_s: float = 120.0,
        scheduler: str | None = "Vanilla",
        tor_binary: str | os.PathLike[str] = "tor",
        tor_gencert_binary: str | os.PathLike[str] = "tor-gencert",
        stop_timeout_s: float = 10.0,
    ) -> None:
        for name, value, low in (("relays", relays, 0), ("authorities", authorities, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if authorities + relays < MIN_TOTAL_RELAYS:
            raise ValueError(
                f"relays: authorities + relays must be >= {MIN_TOTAL_RELAYS} (onion-service "
                f"circuits have 4 hops), got {authorities} + {relays}"
            )
        if not bootstrap_timeout_s > 0:
            raise ValueError(f"bootstrap_timeout_s: expected > 0, got {bootstrap_timeout_s!r}")
        if not stop_timeout_s >= 0:
            raise ValueError(f"stop_timeout_s: expected >= 0, got {stop_timeout_s!r}")
        if scheduler is not None and not re.fullmatch(r"[A-Za-z]+(,[A-Za-z]+)*", scheduler):
            raise ValueError(f"scheduler: expected e.g. 'Vanilla' or 'KIST', got {scheduler!r}")
        self.workdir = Path(workdir).absolute()
        self.relay_count = relays
        self.authority_count = authorities
        self.bootstrap_timeout_s = float(bootstrap_timeout_s)
        self.scheduler = scheduler
        self.tor_binary = tor_binary
        self.tor_gencert_binary = tor_gencert_binary
        self.stop_timeout_s = float(stop_timeout_s)
        self.socks_host = "127.0.0.1"
        self._tors: dict[str, TorProcess] = {}
        self._services: list[OnionService] = []
        self._socks_port: int | None = None
        self._deadline: float | None = None
        self._released = False
        self._ready = False
        self._closed = False
        self._times: dict[str, float] = {}
        self._attempts = 0
        self._started_at: float | None = None

    # ----------------------------------------------------------------- layout
    def _nodes(self, authority_ports: list[int]) -> list[_Node]:
        nodes = []
        index = 0
        for i in range(self.authority_count):
            nodes.append(_Node(f"auth{i}", "authority", self.workdir / f"{index:02d}-auth{i}",
                               authority_ports[2 * i], authority_ports[2 * i + 1]))
            index += 1
        for i in range(self.relay_count):
            nodes.append(_Node(f"relay{i}", "relay", self.workdir / f"{index:02d}-relay{i}"))
            index += 1
        nodes.append(_Node(ONION_SERVICE, "onion-service",
                           self.workdir / f"{index:02d}-{ONION_SERVICE}"))
        nodes.append(_Node(CLIENT, "client", self.workdir / f"{index + 1:02d}-{CLIENT}"))
        return nodes

    @property
    def relay_names(self) -> list[str]:
        """Nicknames of every relay in the consensus (authorities first)."""
        return [f"auth{i}" for i in range(self.authority_count)] + \
               [f"relay{i}" for i in range(self.relay_count)]

    # ----------------------------------------------------------------- keys
    def _generate_keys(self, authorities: list[_Node]) -> list[str]:
        """Return one DirAuthority line per authority, generating its keys (in parallel)."""
        tor = find_program(self.tor_binary)
        gencert = find_program(self.tor_gencert_binary)
        empty = self.workdir / "empty.torrc"
        empty.write_text("")
        jobs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        try:
            for node in authorities:
                keys = node.data_dir / "keys"
                keys.mkdir(mode=0o700, parents=True)
                os.chmod(node.data_dir, 0o700)
                log = node.data_dir / "keygen.log"
                with open(log, "ab") as out:
                    cert = subprocess.Popen(
                        [str(gencert), "--create-identity-key", "-m", "12",
                         "-a", f"127.0.0.1:{node.dir_port}",
                         "-i", str(keys / "authority_identity_key"),
                         "-s", str(keys / "authority_signing_key"),
                         "-c", str(keys / "authority_certificate"),
                         "--passphrase-fd", "0"],
                        stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                    )
                    if cert.stdin is not None:  # always, with stdin=PIPE
                        cert.stdin.write(b"\n")  # empty passphrase
                        cert.stdin.close()
                    jobs.append((f"tor-gencert ({node.name})", cert, log))
                    fingerprint = subprocess.Popen(
                        [str(tor), "--list-fingerprint", "--defaults-torrc", str(empty),
                         "-f", str(empty), "--DataDirectory", str(node.data_dir),
                         "--ORPort", "1", "--Nickname", node.name],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    )
                    jobs.append((f"tor --list-fingerprint ({node.name})", fingerprint, log))
            deadline = time.monotonic() + _KEYGEN_TIMEOUT_S
            for label, process, log in jobs:
                try:
                    code = process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise TorProcessError(label, f"did not finish within "
                                                 f"{_KEYGEN_TIMEOUT_S:g} s") from None
                if code != 0:
                    tail = log.read_text(errors="replace").strip().splitlines()
                    raise TorProcessError(label, "failed", exit_code=code,
                                          last_log_line=tail[-1] if tail else None)
        finally:
            for _, process, _ in jobs:
                if process.poll() is None:
                    process.kill()
                process.wait()
        lines = []
        for node in authorities:
            cert_text = (node.data_dir / "keys" / "authority_certificate").read_text()
            v3ident = re.search(r"^fingerprint ([0-9A-F]{40})$", cert_text, re.M)
            fpr_text = (node.data_dir / "fingerprint").read_text().split()
            if v3ident is None or len(fpr_text) < 2:
                raise TorProcessError(node.name, "key generation left no fingerprint")
            lines.append(f"{node.name} orport={node.or_port} no-v2 v3ident={v3ident.group(1)} "
                         f"127.0.0.1:{node.dir_port} {fpr_text[1]}")
        return lines

    # ----------------------------------------------------------------- torrc
    def _options(self, node: _Node, dir_authorities: list[str]) -> list[tuple[str, str]]:
        options = [
            ("TestingTorNetwork", "1"),
            ("Nickname", node.name.replace("-", "")),
            ("SafeLogging", "0"),
            ("LogTimeGranularity", "1"),
            ("ShutdownWaitLength", "0"),
            ("GeoIPFile", '""'),
            ("GeoIPv6File", '""'),
            ("PathsNeededToBuildCircuits", "0.67"),
            ("TestingDirAuthVoteGuard", "*"),
            ("TestingDirAuthVoteHSDir", "*"),
            ("TestingDirAuthVoteExit", "*"),
            ("TestingMinExitFlagThreshold", "0"),
            ("V3AuthNIntervalsValid", "2"),
        ]
        if self.scheduler is not None:
            options.append(("Schedulers", self.scheduler))
        options += [("DirAuthority", line) for line in dir_authorities]
        if node.role in ("authority", "relay"):
            or_port = node.or_port if node.or_port is not None else "auto"
            options += [
                ("ORPort", f"127.0.0.1:{or_port}"),
                ("Address", "127.0.0.1"),
                ("AssumeReachable", "1"),
                ("ExitRelay", "0"),
                ("ExitPolicy", "reject *:*"),
                ("ContactInfo", f"{node.name}@example.invalid"),
                ("SocksPort", "0"),
            ]
        if node.role == "authority":
            options += [
                ("DirPort", f"127.0.0.1:{node.dir_port}"),
                ("AuthoritativeDirectory", "1"),
                ("V3AuthoritativeDirectory", "1"),
                ("TestingV3AuthInitialVotingInterval", "5"),
                ("TestingV3AuthInitialVoteDelay", "2"),
                ("TestingV3AuthInitialDistDelay", "2"),
                ("V3AuthVotingInterval", "10"),
                ("V3AuthVoteDelay", "2"),
                ("V3AuthDistDelay", "2"),
                ("AuthDirVoteStableGuaranteeMinUptime", "0"),
                ("AuthDirVoteStableGuaranteeMTBF", "0"),
                ("AuthDirFastGuarantee", "1 bytes"),
            ]
        elif node.role == "onion-service":
            options += [("SocksPort", "0"), ("DisableNetwork", "1")]
        elif node.role == "client":
            options += [("SocksPort", "127.0.0.1:auto IsolateSOCKSAuth ExtendedErrors"),
                        ("DisableNetwork", "1")]
        return options

    # ----------------------------------------------------------------- start
    def start(self) -> PrivateTorNetwork:
        """Generate keys, launch every tor, pass the readiness gate, release the clients.

        Returns once the onion-service and client tors have been allowed onto the network;
        :meth:`wait_ready` then waits for them to bootstrap. On any failure every tor
        launched so far is stopped before the error propagates.

        Returns
        -------
        PrivateTorNetwork
            self.

        Raises
        ------
        RuntimeError
            If already started or closed.
        ValueError
            If ``workdir`` already holds a network.
        TorNotInstalled
            If tor or tor-gencert is missing (names the Debian package ``tor``).
        TorVersionUnsupported
            If tor is too old.
        TorProcessError
            If a tor exits, or key generation fails.
        TorBootstrapTimeout
            If the consensus gate is not passed within ``bootstrap_timeout_s``.
        TorControlError
            If a control connection fails.
        """
        if self._started_at is not None or self._closed:
            raise RuntimeError("PrivateTorNetwork: start() may be called once")
        require_tor_version(self.tor_binary)
        find_program(self.tor_gencert_binary)
        self.workdir.mkdir(parents=True, exist_ok=True)
        probe = self._nodes([0] * (2 * self.authority_count))
        taken = [n.data_dir.name for n in probe if n.data_dir.exists()]
        if taken:
            raise ValueError(f"workdir: {str(self.workdir)!r} already holds {taken[0]}; "
                             "use an empty folder")
        self._started_at = time.monotonic()
        try:
            for attempt in range(1, _PORT_RETRIES + 1):
                self._attempts = attempt
                try:
                    self._launch()
                    break
                except _PortTaken:
                    stop_tors(self._tors.values(), self.stop_timeout_s)
                    self._tors.clear()
                    for node in probe:
                        shutil.rmtree(node.data_dir, ignore_errors=True)
                    if attempt == _PORT_RETRIES:
                        raise TorProcessError("auth0", "could not bind its ports "
                                              f"in {_PORT_RETRIES} tries") from None
            self._wait_consensus()
            released = time.monotonic()
            for name in (ONION_SERVICE, CLIENT):
                self._tors[name].control.set_options({"DisableNetwork": "0"})
            self._times["released"] = released
            self._released = True
        except BaseException:
            self.close()
            raise
        return self

    def _launch(self) -> None:
        started = time.monotonic()
        nodes = self._nodes(_free_ports(2 * self.authority_count))
        authorities = [n for n in nodes if n.role == "authority"]
        dir_authorities = self._generate_keys(authorities)
        self._times["keys"] = time.monotonic() - started
        launch_started = time.monotonic()
        self._deadline = launch_started + self.bootstrap_timeout_s
        for node in nodes:
            self._tors[node.name] = TorProcess.spawn(
                node.name, node.data_dir, self._options(node, dir_authorities),
                tor_binary=self.tor_binary,
            )
        for node in nodes:
            tor = self._tors[node.name]
            try:
                tor.attach_control(_CONTROL_PORT_TIMEOUT_S)
            except TorProcessError:
                if node.role == "authority" and self._bind_failed(tor):
                    raise _PortTaken() from None
                raise
        self._times["launch"] = time.monotonic() - launch_started

    @staticmethod
    def _bind_failed(tor: TorProcess) -> bool:
        text = ""
        for path in (tor.stdout_path, tor.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "Address already in use" in text or "Could not bind" in text

    def _remaining(self) -> float:
        if self._deadline is None:
            return self.bootstrap_timeout_s
        return max(0.0, self._deadline - time.monotonic())

    def _check_alive(self) -> None:
        for tor in self._tors.values():
            tor.check_alive()

    def consensus_status(self) -> tuple[bool, str]:
        """Check the two-part readiness gate once.

        Returns
        -------
        (bool, str)
            Whether (a) the first authority's consensus lists every relay with
            Running, Valid, Stable, Fast, Guard and HSDir, and (b) every non-authority
            relay holds every relay's microdescriptor; and a description of what is
            missing (or ``"complete"``).

        Raises
        ------
        RuntimeError
            If the network was not started.
        """
        if not self._tors:
            raise RuntimeError("PrivateTorNetwork: not started")
        wanted = set(self.relay_names)
        try:
            flags = _parse_consensus_flags(self._tors["auth0"].control.get_info("ns/all"))
        except TorControlError:
            return False, "auth0 has no consensus yet"
        complete = {n for n in wanted if REQUIRED_FLAGS <= flags.get(n, set())}
        if complete != wanted:
            missing = ", ".join(sorted(wanted - complete))
            return False, (f"auth0's consensus lists {len(complete)} of {len(wanted)} relays "
                           f"with {'/'.join(sorted(REQUIRED_FLAGS))} (missing: {missing})")
        for i in range(self.relay_count):
            name = f"relay{i}"
            try:
                mds = self._tors[name].control.get_info("md/all")
            except TorControlError:
                mds = ""
            count = sum(1 for line in mds.splitlines() if line.startswith("onion-key"))
            if count < len(wanted):
                return False, f"{name} holds {count} of {len(wanted)} microdescriptors"
        return True, "complete"

    def _wait_consensus(self, poll_s: float = 0.5) -> None:
        started = time.monotonic()
        while True:
            self._check_alive()
            ok, status = self.consensus_status()
            if ok:
                self._times["consensus"] = time.monotonic() - started
                return
            if self._remaining() <= 0:
                raise TorBootstrapTimeout(
                    "auth0", f"consensus gate: {status}", self.bootstrap_timeout_s,
                    last_log_line=self._tors["auth0"].last_log_line(),
                )
            time.sleep(min(poll_s, self._remaining()))

    def wait_ready(self, timeout_s: float | None = None) -> BootstrapTimings:
        """Block until the onion-service and client tors are at 100 % (idempotent).

        Parameters
        ----------
        timeout_s : float, optional
            Seconds to wait; default: what is left of ``bootstrap_timeout_s`` since the
            tors were launched.

        Returns
        -------
        BootstrapTimings

        Raises
        ------
        RuntimeError
            If :meth:`start` has not succeeded, or the network is closed.
        ValueError
            If ``timeout_s`` is not positive.
        TorBootstrapTimeout
            Naming the tor that is not at 100 %, its phase and last log warning.
        TorProcessError
            If any tor exits meanwhile.
        """
        if not self._released or self._closed:
            raise RuntimeError("PrivateTorNetwork: start() first (and not closed)")
        if self._ready:
            return self.timings
        if timeout_s is None:
            limit, deadline = self.bootstrap_timeout_s, time.monotonic() + self._remaining()
        else:
            if not timeout_s > 0:
                raise ValueError(f"timeout_s: expected > 0, got {timeout_s!r}")
            limit, deadline = float(timeout_s), time.monotonic() + float(timeout_s)
        pending = [ONION_SERVICE, CLIENT]
        while True:
            self._check_alive()
            phases = {name: self._tors[name].control.bootstrap_status() for name in pending}
            pending = [name for name in pending if phases[name].progress < 100]
            if not pending:
                break
            if time.monotonic() >= deadline:
                tor = self._tors[pending[0]]
                raise TorBootstrapTimeout(tor.name, str(phases[tor.name]), limit,
                                          last_log_line=tor.last_log_line())
            time.sleep(0.2)
        self._socks_port = self._find_socks_port(deadline, limit)
        now = time.monotonic()
        self._times["ready"] = now - self._times["released"]
        self._times["total"] = now - (self._started_at or now)
        self._ready = True
        return self.timings

    def _find_socks_port(self, deadline: float, limit: float) -> int:
        client = self._tors[CLIENT]
        while True:
            listeners = client.control.listeners("socks")
            if listeners:
                return listeners[0][1]
            if time.monotonic() >= deadline:
                raise TorBootstrapTimeout(CLIENT, "SOCKS listener not open", limit,
                                          last_log_line=client.last_log_line())
            time.sleep(0.1)

    # ----------------------------------------------------------------- accessors
    @property
    def timings(self) -> BootstrapTimings:
        """Measured durations of the stages so far (see :class:`BootstrapTimings`)."""
        if "consensus" not in self._times:
            raise RuntimeError("PrivateTorNetwork: not started")
        return BootstrapTimings(
            keys_s=self._times["keys"], launch_s=self._times["launch"],
            consensus_s=self._times["consensus"], ready_s=self._times.get("ready"),
            total_s=self._times.get("total"), attempts=self._attempts,
        )

    @property
    def socks_port(self) -> int:
        """The client tor's SOCKS5 port on ``socks_host`` (after :meth:`wait_ready`)."""
        if self._socks_port is None:
            raise RuntimeError("PrivateTorNetwork: socks_port is known after wait_ready()")
        return self._socks_port

    @property
    def tors(self) -> dict[str, TorProcess]:
        """Every tor by name: ``auth0``..., ``relay0``..., ``onion-service``, ``client``."""
        return dict(self._tors)

    @property
    def pids(self) -> dict[str, int]:
        """Process id of every tor, by name."""
        return {name: tor.pid for name, tor in self._tors.items()}

    def _tor(self, name: str) -> TorProcess:
        if name not in self._tors:
            raise RuntimeError("PrivateTorNetwork: not started")
        return self._tors[name]

    @property
    def onion_service_control(self) -> TorControl:
        """Control connection of the tor that hosts onion services."""
        return self._tor(ONION_SERVICE).control

    @property
    def onion_service_pid(self) -> int:
        """PID of the onion-service tor: the only process a published service's backend sees."""
        return self._tor(ONION_SERVICE).pid

    @property
    def client_control(self) -> TorControl:
        """Control connection of the client tor (circuits, streams, NEWNYM)."""
        return self._tor(CLIENT).control

    @property
    def client_pid(self) -> int:
        """PID of the client tor (the owner of the SOCKS port)."""
        return self._tor(CLIENT).pid

    # ----------------------------------------------------------------- actions
    def publish_onion(
        self,
        ports: Mapping[int, tuple[str, int]],
        *,
        key_file: str | os.PathLike[str] | None = None,
        timeout_s: float = 120.0,
    ) -> OnionService:
        """Publish an onion service on the onion-service tor; see :func:`publish_onion`.

        Waits for :meth:`wait_ready` first. The service is removed at :meth:`close`.

        Parameters
        ----------
        ports : mapping of int to (str, int)
            Virtual port to local target, e.g. ``{4222: ("127.0.0.1", nats_port)}``.
        key_file : str or os.PathLike, optional
            Key file for a stable address (created mode 0600 if missing).
        timeout_s : float, optional
            Seconds to wait for the first stored descriptor; default 120.

        Returns
        -------
        OnionService

        Raises
        ------
        ValueError
            If ``ports`` is malformed.
        OnionKeyFileError
            If ``key_file`` cannot be used.
        OnionPublishError
            If tor refuses or the upload fails or times out.
        TorControlError
            If the control connection fails.
        """
        self.wait_ready()
        service = publish_onion(self.onion_service_control, ports, key_file=key_file,
                                timeout_s=timeout_s)
        self._services.append(service)
        return service

    def new_identity(self) -> None:
        """``SIGNAL NEWNYM`` on the client tor (new circuits, onion-service cache purged).

        Pass it as ``SocksForwarder(..., new_identity=net.new_identity)``.

        Raises
        ------
        TorControlError
            If the control connection fails.
        """
        self.client_control.signal_newnym()

    def close(self, timeout_s: float | None = None) -> None:
        """Remove published services, then stop and reap every tor (idempotent).

        Parameters
        ----------
        timeout_s : float, optional
            Seconds between SIGTERM and SIGKILL; default ``stop_timeout_s``.
        """
        if self._closed:
            return
        self._closed = True
        for service in self._services:
            with contextlib.suppress(TorControlError):
                service.close()
        stop_tors(self._tors.values(),
                  self.stop_timeout_s if timeout_s is None else float(timeout_s))

    def __enter__(self) -> PrivateTorNetwork:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ready" if self._ready else \
            "starting" if self._tors else "new"
        return (f"PrivateTorNetwork({str(self.workdir)!r}, authorities={self.authority_count}, "
                f"relays={self.relay_count}, {state})")

