"""`free_port`: a loopback port that is free now and outside the kernel's ephemeral range."""

import socket

import pytest

from festival import services
from festival.services import _ephemeral_range, free_port


def test_port_outside_ephemeral_range() -> None:
    low, high = _ephemeral_range()

    ports = [free_port() for _ in range(50)]

    assert not [port for port in ports if low <= port <= high]


def test_port_can_be_bound() -> None:
    port = free_port()

    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert server.getsockname()[1] == port


def test_port_skips_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    choose = services.secrets.choice
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken_port = taken.getsockname()[1]
        # The first candidate offered is the taken port, and later ones are random again.
        offered = iter([taken_port])
        monkeypatch.setattr(services.secrets, "choice", lambda candidates: next(offered, None) or choose(candidates))

        port = free_port()

    assert port != taken_port
