"""The MQTT client's write registration, which tests/e2e/test_scale_out.py caught racing: a
worker thawed after the broker had dropped it printed an ``OSError: Bad file descriptor``
traceback, because aiomqtt registers paho's socket for writing a turn of the loop after paho
asked, by a descriptor number read at the time of asking, and paho closed the socket in
between. Here the same sequence, on a socket pair instead of a broker, without timing luck."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from relayer.bus.mqtt import _Client


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def _writer_on(loop: asyncio.AbstractEventLoop, fileno: int) -> bool:
    selector: Any = loop._selector  # type: ignore[attr-defined]  # the loop's own selector
    try:
        key = selector.get_key(fileno)
    except KeyError:
        return False
    return key.data[1] is not None  # (reader handle, writer handle)


async def _turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_socket_paho_still_uses_is_registered_for_writing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    loop = asyncio.get_running_loop()
    sock, _ = pair
    client = _Client("127.0.0.1", 1)
    client._client._sock = sock  # as paho holds it once connected
    client._on_socket_register_write(client._client, None, sock)
    await _turn()
    try:
        assert _writer_on(loop, sock.fileno())
    finally:
        loop.remove_writer(sock.fileno())


async def test_a_socket_closed_before_the_loop_registers_it_is_not_registered(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    loop = asyncio.get_running_loop()
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: failures.append(context))
    sock, _ = pair
    client = _Client("127.0.0.1", 1)
    client._client._sock = sock
    client._on_socket_register_write(client._client, None, sock)
    # The connection breaks before the loop's next turn: paho forgets the socket, closes it.
    fileno = sock.fileno()
    client._client._sock = None
    sock.close()
    # The number goes to a new socket of this process at once (the lowest free one).
    with socket.socket() as successor:
        await _turn()
        assert not failures, failures
        if successor.fileno() == fileno:
            assert not _writer_on(loop, fileno), "the dead client's writer took a new socket"
