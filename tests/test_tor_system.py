"""Mode ``system`` with password authentication, against a real tor.

The tor here stands for an operator's: started on its own (no ``__OwningControllerProcess``,
so our control connections never own it), cookie authentication off, so only the password
opens its control port. It never bootstraps (no internet here): these tests check how
:class:`SystemTor` reaches and authenticates to it, not circuits (the private-network
tests in test_tor_network.py cover those).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tormentor.transport.tor import CONTROL_PASSWORD_ENV, SystemTor, TorControlError, control_password
from tormentor.transport.tor.process import render_torrc
from tormentor.transport.tor_client import NewIdentity

pytestmark = [
    pytest.mark.tor,
    pytest.mark.skipif(shutil.which("tor") is None, reason="tor not installed (Debian package `tor`)"),
]

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hashed_password(password: str) -> str:
    done = subprocess.run(
        ["tor", "--hash-password", password], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def password_tor(tmp_path_factory):
    """An operator's tor whose control port takes only PASSWORD.

    Yields ``(process, control port, socks port)``.
    """
    data = Path(tmp_path_factory.mktemp("tor")) / "data"
    data.mkdir(mode=0o700)
    socks_port = free_port()
    (data / "torrc").write_text(
        render_torrc(
            [
                ("DataDirectory", str(data)),
                ("ControlPort", "127.0.0.1:auto"),
                ("ControlPortWriteToFile", str(data / "control_port")),
                ("CookieAuthentication", "0"),
                ("HashedControlPassword", hashed_password(PASSWORD)),
                ("SocksPort", f"127.0.0.1:{socks_port}"),
                ("Log", f"notice file {data / 'notice.log'}"),
            ]
        )
    )
    (data / "defaults").write_text("")
    tor = subprocess.Popen(
        ["tor", "-f", str(data / "torrc"), "--defaults-torrc", str(data / "defaults")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (data / "control_port").exists():
            assert tor.poll() is None, (data / "notice.log").read_text()
            assert time.monotonic() < deadline, "tor opened no control port in 30 s"
            time.sleep(0.05)
        match = re.search(r"PORT=[^\s:]+:(\d+)", (data / "control_port").read_text())
        assert match, "tor wrote no control port"
        yield tor, int(match.group(1)), socks_port
    finally:
        tor.terminate()
        tor.wait(timeout=30)


def test_the_right_password_opens_the_control_port(password_tor):
    tor, control_port, socks_port = password_tor
    with SystemTor(control_port, socks_port, password=PASSWORD) as system:
        assert system.onion_service_control.listeners("socks") == [("127.0.0.1", socks_port)]
    assert tor.poll() is None  # not ours: close() leaves it running


@pytest.mark.parametrize("password", ["wrong password", None])
def test_a_wrong_or_missing_password_is_refused_without_echoing_it(password_tor, password):
    tor, control_port, socks_port = password_tor
    system = SystemTor(control_port, socks_port, password=password)
    with pytest.raises(TorControlError) as info:
        system.start()
    message = str(info.value)
    assert "wrong password" not in message and PASSWORD not in message
    assert "authentication failed" in message
    with pytest.raises(RuntimeError):
        system.onion_service_control  # noqa: B018 (nothing connected)
    assert tor.poll() is None


def test_a_socks_port_that_is_not_tors_is_refused(password_tor):
    _, control_port, socks_port = password_tor
    other = free_port()
    with pytest.raises(TorControlError) as info:
        SystemTor(control_port, other, password=PASSWORD).start()
    assert f"127.0.0.1:{other}" in str(info.value) and f"127.0.0.1:{socks_port}" in str(info.value)


def test_the_password_comes_from_the_environment():
    assert control_password({CONTROL_PASSWORD_ENV: PASSWORD}) == PASSWORD
    assert control_password({CONTROL_PASSWORD_ENV: ""}) is None  # empty: cookie authentication
    assert control_password({}) is None


def test_clients_new_identity_authenticates_with_the_environment_password(password_tor, monkeypatch):
    tor, control_port, _ = password_tor
    monkeypatch.delenv(CONTROL_PASSWORD_ENV, raising=False)
    with pytest.raises(TorControlError, match="authentication failed"):
        NewIdentity(control_port)()
    monkeypatch.setenv(CONTROL_PASSWORD_ENV, PASSWORD)
    new_identity = NewIdentity(control_port)
    try:
        new_identity()  # SIGNAL NEWNYM accepted
        new_identity()  # over the same connection
    finally:
        new_identity.close()
    assert tor.poll() is None
