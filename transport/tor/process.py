"""Launch, own and stop one tor daemon.

Every tor is started as::

    tor -f TORRC --defaults-torrc EMPTY __OwningControllerProcess <our PID>

with ``-f`` and ``--defaults-torrc`` both pointing at files we write, so Debian's
``/etc/tor/torrc`` is never read. Its control port is ``127.0.0.1:auto`` (the OS picks it;
tor writes it to ``control_port`` in the data directory) with cookie authentication. One
:class:`~tormentor.transport.tor.control.TorControl` per tor is opened at once and kept
until teardown: stem sends ``TAKEOWNERSHIP``, so tor exits when that connection closes,
and on its own if this Python process dies.

Teardown (:func:`stop_tors`) closes the control connections, sends SIGTERM, waits, then
SIGKILLs whatever is left: tor 0.4.9.11 was once seen hanging after SIGTERM.

Typical use::

    tor = TorProcess.launch("client", Path("/tmp/net/client"),
                            [("SocksPort", "127.0.0.1:auto"), ("GeoIPFile", '""')])
    try:
        tor.control.wait_bootstrapped(120, check_alive=tor.check_alive)
    finally:
        tor.stop()
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import stem.version

from .control import MINIMUM_TOR_VERSION, TorControl
from .errors import TorControlError, TorNotInstalled, TorProcessError, TorVersionUnsupported

__all__ = [
    "TorProcess",
    "find_program",
    "render_torrc",
    "require_tor_version",
    "stop_tors",
    "tor_version",
]

#: Seconds to wait after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 10.0

_OPTION_NAME = re.compile(r"^_{0,2}[A-Za-z][A-Za-z0-9_]*$")
_LOG_TAIL_BYTES = 64 * 1024


def find_program(program: str | os.PathLike[str]) -> Path:
    """Return the path of an executable, looked up in ``PATH`` when given a bare name.

    Parameters
    ----------
    program : str or os.PathLike
        A bare name (``"tor"``, ``"tor-gencert"``) or a path.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TorNotInstalled
        If it is not found or not executable (the message names the Debian package).
    """
    text = os.fspath(program)
    if not text:
        raise TorNotInstalled(text, "empty program name")
    if os.sep in text or (os.altsep and os.altsep in text):
        path = Path(text)
        if not path.is_file():
            raise TorNotInstalled(text, "no such file")
        if not os.access(path, os.X_OK):
            raise TorNotInstalled(text, "not executable")
        return path
    found = shutil.which(text)
    if found is None:
        raise TorNotInstalled(text, "not found in PATH")
    return Path(found)


def tor_version(tor_binary: str | os.PathLike[str] = "tor") -> stem.version.Version:
    """Return the version printed by ``tor --version``.

    Parameters
    ----------
    tor_binary : str or os.PathLike
        Bare name or path; default ``"tor"``.

    Returns
    -------
    stem.version.Version

    Raises
    ------
    TorNotInstalled
        If the binary is missing, does not run, or prints no version.
    """
    path = find_program(tor_binary)
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30,
            stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TorNotInstalled(str(path), f"`tor --version` failed: {exc}") from None
    match = re.search(r"Tor version (\d+\.\d+\.\d+(?:\.\d+)?)", out.stdout)
    if match is None:
        raise TorNotInstalled(str(path), "`tor --version` printed no version")
    return stem.version.Version(match.group(1))


def require_tor_version(
    tor_binary: str | os.PathLike[str] = "tor", minimum: str = MINIMUM_TOR_VERSION
) -> stem.version.Version:
    """Return the tor binary's version, or raise if it is older than ``minimum``.

    Parameters
    ----------
    tor_binary : str or os.PathLike
        Bare name or path.
    minimum : str
        Oldest version accepted; default :data:`~tormentor.transport.tor.control.MINIMUM_TOR_VERSION`.

    Returns
    -------
    stem.version.Version

    Raises
    ------
    TorNotInstalled
        If the binary is missing or prints no version.
    TorVersionUnsupported
        If it is older than ``minimum``.
    """
    found = tor_version(tor_binary)
    if found < stem.version.Version(minimum):
        raise TorVersionUnsupported(os.fspath(tor_binary), str(found), minimum)
    return found


def render_torrc(options: Iterable[tuple[str, str]]) -> str:
    """Render ``(option, value)`` pairs as torrc text, one line each, in order.

    Repeated options (e.g. several ``DirAuthority``) are kept as separate lines.

    Parameters
    ----------
    options : iterable of (str, str)
        E.g. ``[("SocksPort", "127.0.0.1:auto"), ("GeoIPFile", '""')]``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If an option name is not a tor option identifier, or a value holds a line break
        (which would inject a second option).
    """
    lines = []
    for option, value in options:
        if not isinstance(option, str) or not _OPTION_NAME.match(option):
            raise ValueError(f"options: invalid torrc option name {option!r}")
        value = str(value)
        if "\n" in value or "\r" in value or "\0" in value:
            raise ValueError(f"options: value of {option} contains a line break or NUL")
        lines.append(f"{option} {value}".rstrip())
    return "\n".join(lines) + "\n"


def last_problem_line(*log_files: Path) -> str | None:
    """Return the most telling problem line of tor's logs.

    That is the last ``[err]`` line, else the last ``[warn]`` line; when the ``[err]`` line
    only says "see warnings above", the ``[warn]`` line just before it instead.

    Parameters
    ----------
    *log_files : pathlib.Path
        Tor log files, searched in order; missing files are skipped. Only the last 64 KiB
        of each is read.

    Returns
    -------
    str or None
        The line without its timestamp, or None if no file has one.
    """
    last_err: str | None = None
    last_warn: str | None = None
    for path in log_files:
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - _LOG_TAIL_BYTES))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        for line in text.splitlines():
            index = line.find("[err]")
            if index >= 0:
                if "see warnings above" in line and last_warn is not None:
                    last_err = last_warn
                else:
                    last_err = line[index:].strip()
                continue
            index = line.find("[warn]")
            if index >= 0:
                last_warn = line[index:].strip()
    return last_err or last_warn


class TorProcess:
    """One tor daemon launched and owned by this process.

    Use :meth:`launch` (or :meth:`spawn` then :meth:`attach_control`, to start several
    tors at once). Attributes are read-only.

    Attributes
    ----------
    name : str
        Label, e.g. ``"auth0"``, ``"client"``.
    data_dir : pathlib.Path
        Tor's DataDirectory (mode 0700); holds ``torrc``, ``notice.log``, ``stdout.log``.
    pid : int
        Tor's process id.
    control : TorControl
        The one control connection (after :meth:`attach_control`).
    """

    def __init__(self, *, name: str, data_dir: Path, popen: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.data_dir = data_dir
        self._popen = popen
        self._control: TorControl | None = None
        self._control_port: int | None = None

    # ----------------------------------------------------------------- paths
    @property
    def torrc_path(self) -> Path:
        """Path of the torrc this tor was started with."""
        return self.data_dir / "torrc"

    @property
    def log_path(self) -> Path:
        """Tor's notice-level log file."""
        return self.data_dir / "notice.log"

    @property
    def stdout_path(self) -> Path:
        """Tor's stdout and stderr (messages printed before the log file is set up)."""
        return self.data_dir / "stdout.log"

    @property
    def _control_port_file(self) -> Path:
        return self.data_dir / "control_port"

    @property
    def pid(self) -> int:
        """Tor's process id."""
        return self._popen.pid

    @property
    def control_port(self) -> int:
        """The control port tor opened (known after :meth:`attach_control`)."""
        if self._control_port is None:
            raise RuntimeError(f"tor {self.name!r}: control port not known yet")
        return self._control_port

    @property
    def control(self) -> TorControl:
        """The control connection; :meth:`attach_control` must have succeeded."""
        if self._control is None:
            raise RuntimeError(f"tor {self.name!r}: no control connection yet")
        return self._control

    # ----------------------------------------------------------------- start
    @classmethod
    def spawn(
        cls,
        name: str,
        data_dir: Path,
        options: Sequence[tuple[str, str]],
        *,
        tor_binary: str | os.PathLike[str] = "tor",
    ) -> TorProcess:
        """Write the torrc and start tor; return without waiting for it.

        The torrc gets, before ``options``: ``DataDirectory``, ``RunAsDaemon 0``,
        ``ControlPort 127.0.0.1:auto``, ``ControlPortWriteToFile``, ``CookieAuthentication 1``
        and ``Log notice file <data_dir>/notice.log``.

        Parameters
        ----------
        name : str
            Label used in errors.
        data_dir : pathlib.Path
            Tor's DataDirectory; created with mode 0700 if missing. Pre-generated keys may
            already be in ``data_dir / "keys"``.
        options : sequence of (str, str)
            Further torrc lines, in order (see :func:`render_torrc`).
        tor_binary : str or os.PathLike, optional
            Bare name or path of tor; default ``"tor"``.

        Returns
        -------
        TorProcess

        Raises
        ------
        ValueError
            If ``options`` is malformed.
        TorNotInstalled
            If ``tor_binary`` is missing.
        TorProcessError
            If the process cannot be started.
        """
        binary = find_program(tor_binary)
        data_dir = Path(data_dir).absolute()
        base = [
            ("DataDirectory", str(data_dir)),
            ("RunAsDaemon", "0"),
            ("ControlPort", "127.0.0.1:auto"),
            ("ControlPortWriteToFile", str(data_dir / "control_port")),
            ("CookieAuthentication", "1"),
            ("Log", f"notice file {data_dir / 'notice.log'}"),
        ]
        text = render_torrc([*base, *options])
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        (data_dir / "control_port").unlink(missing_ok=True)
        (data_dir / "torrc").write_text(text)
        empty = data_dir / "torrc.defaults"
        empty.write_text("")
        command = [
            str(binary), "-f", str(data_dir / "torrc"), "--defaults-torrc", str(empty),
            "__OwningControllerProcess", str(os.getpid()),
        ]
        with open(data_dir / "stdout.log", "wb") as stdout:
            try:
                popen = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=stdout,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            except OSError as exc:
                raise TorProcessError(name, f"could not be started: {exc}") from None
        return cls(name=name, data_dir=data_dir, popen=popen)

    def attach_control(self, timeout_s: float = 30.0, *, poll_s: float = 0.05) -> TorControl:
        """Wait for tor's control port, connect, authenticate and take ownership.

        Parameters
        ----------
        timeout_s : float, optional
            Seconds to wait for the port file; default 30.
        poll_s : float, optional
            Seconds between checks; default 0.05.

        Returns
        -------
        TorControl

        Raises
        ------
        TorProcessError
            If tor exits first, or opens no control port within ``timeout_s``.
        TorControlError
            If connecting or authenticating fails.
        TorVersionUnsupported
            If the running tor is too old.
        """
        if self._control is not None:
            return self._control
        deadline = time.monotonic() + timeout_s
        port: int | None = None
        while port is None:
            self.check_alive()
            try:
                content = self._control_port_file.read_text()
            except FileNotFoundError:
                content = ""
            match = re.search(r"PORT=[^\s:]+:(\d+)", content)
            if match:
                port = int(match.group(1))
                break
            if time.monotonic() >= deadline:
                raise TorProcessError(
                    self.name, f"did not open its control port within {timeout_s:g} s",
                    last_log_line=self.last_log_line(),
                )
            time.sleep(poll_s)
        self._control_port = port
        try:
            self._control = TorControl.connect(port, name=self.name)
        except TorControlError:
            self.check_alive()  # a dead tor is the better explanation
            raise
        return self._control

    @classmethod
    def launch(
        cls,
        name: str,
        data_dir: Path,
        options: Sequence[tuple[str, str]],
        *,
        tor_binary: str | os.PathLike[str] = "tor",
        start_timeout_s: float = 30.0,
    ) -> TorProcess:
        """Start tor and open its control connection; kill it if any step fails.

        Parameters
        ----------
        name, data_dir, options, tor_binary
            As for :meth:`spawn`.
        start_timeout_s : float, optional
            Seconds to wait for the control port; default 30.

        Returns
        -------
        TorProcess

        Raises
        ------
        TorNotInstalled
            If tor is missing.
        TorVersionUnsupported
            If tor is too old.
        TorProcessError
            If tor exits or opens no control port in time.
        TorControlError
            If the control connection fails.
        """
        require_tor_version(tor_binary)
        tor = cls.spawn(name, data_dir, options, tor_binary=tor_binary)
        try:
            tor.attach_control(start_timeout_s)
        except BaseException:
            tor.stop()
            raise
        return tor

    # ----------------------------------------------------------------- state
    @property
    def exit_code(self) -> int | None:
        """Tor's exit status, or None while it runs."""
        return self._popen.poll()

    def is_running(self) -> bool:
        """Return True while the tor process has not exited."""
        return self._popen.poll() is None

    def last_log_line(self) -> str | None:
        """Return the last ``[err]`` (else ``[warn]``) line of this tor's logs."""
        return last_problem_line(self.stdout_path, self.log_path)

    def check_alive(self) -> None:
        """Raise if tor has exited.

        Raises
        ------
        TorProcessError
            With the exit code and tor's last warning line.
        """
        code = self._popen.poll()
        if code is not None:
            raise TorProcessError(self.name, "exited", exit_code=code,
                                  last_log_line=self.last_log_line())

    # ----------------------------------------------------------------- stop
    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Stop this tor; see :func:`stop_tors`. Idempotent.

        Returns
        -------
        int
            Tor's exit status.
        """
        stop_tors([self], timeout_s)
        return self._popen.returncode

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close()

    def _signal(self, signum: int) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signum)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self._popen.returncode}"
        return f"TorProcess({self.name!r}, pid={self.pid}, {state})"


def stop_tors(tors: Iterable[TorProcess], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop tors together: close controllers, SIGTERM, wait, SIGKILL what is left.

    Closing an owning controller already makes tor exit; SIGTERM covers tors we do not own
    through a controller, and SIGKILL covers a tor that hangs after SIGTERM. Every process
    is reaped, so none is left as a zombie or an orphan. Idempotent.

    Parameters
    ----------
    tors : iterable of TorProcess
        The tors to stop.
    timeout_s : float, optional
        Seconds to wait after SIGTERM before SIGKILL; default 10.
    """
    tors = list(tors)
    for tor in tors:
        tor._close_control()
    for tor in tors:
        tor._signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for tor in tors:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            tor._popen.wait(remaining)
        except subprocess.TimeoutExpired:
            tor._signal(signal.SIGKILL)
            tor._popen.wait()
