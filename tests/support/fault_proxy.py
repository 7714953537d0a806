"""A fault-injecting TCP proxy: put it between two services (give the caller the proxy's address
instead of the callee's) and make the connection slow, stalled or dropped, then heal it.

It works on bytes, below gRPC, so it serves any service and shows what a real network does:

  pass_through()  bytes flow both ways as they arrive;
  slow(delay_s)   every chunk of bytes, each way, waits `delay_s` before it is passed on;
  stall()         connections stay open, but no byte is passed on either way (a peer that hangs,
                  or a network that black-holes packets): the caller hears nothing until its
                  own deadline; the bytes held back are passed on once healed, late;
  drop()          every open connection is closed at once, and new ones are closed as soon as
                  they are accepted (a peer that went away, or a network partition);
  heal()          the same as pass_through().

`connections` counts the connections accepted so far; `open_connections` those still open.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
import time
from dataclasses import dataclass

BUFFER_BYTES = 65_536
POLL_INTERVAL_S = 0.02


class Mode(enum.Enum):
    PASS = "pass"
    SLOW = "slow"
    STALL = "stall"
    DROP = "drop"


@dataclass
class _Connection:
    downstream: socket.socket
    upstream: socket.socket

    def close(self) -> None:
        for sock in (self.downstream, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class FaultProxy:
    """Listens on a free loopback port and forwards each connection to `target` (host:port)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(POLL_INTERVAL_S * 10)
        self.port: int = self._listener.getsockname()[1]
        self._mode = Mode.PASS
        self._delay_s = 0.0
        self._changed = threading.Condition()
        self._open: list[_Connection] = []
        self.connections = 0
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        with self._changed:
            return len(self._open)

    def start(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._set(Mode.PASS)
        self._acceptor.join(timeout=5)
        self._listener.close()
        self._close_all()

    def pass_through(self) -> None:
        self._set(Mode.PASS)

    heal = pass_through

    def slow(self, delay_s: float) -> None:
        self._set(Mode.SLOW, delay_s)

    def stall(self) -> None:
        self._set(Mode.STALL)

    def drop(self) -> None:
        self._set(Mode.DROP)
        self._close_all()

    def _set(self, mode: Mode, delay_s: float = 0.0) -> None:
        with self._changed:
            self._mode, self._delay_s = mode, delay_s
            self._changed.notify_all()

    def _close_all(self) -> None:
        with self._changed:
            dropped, self._open = self._open, []
        for connection in dropped:
            connection.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._changed:
                dropping = self._mode is Mode.DROP
            if dropping:
                downstream.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                downstream.close()
                continue
            for sock in (downstream, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(downstream, upstream)
            with self._changed:
                self._open.append(connection)
                self.connections += 1
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(
                    target=self._pump, args=(connection, source, sink), daemon=True
                ).start()

    def _pump(self, connection: _Connection, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                chunk = source.recv(BUFFER_BYTES)
                if not chunk:
                    break
                if not self._wait_until_passing():
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._changed:
                if connection in self._open:
                    self._open.remove(connection)
            connection.close()

    def _wait_until_passing(self) -> bool:
        """Holds a chunk while stalled, delays it while slow; False when it must be dropped."""
        with self._changed:
            while self._mode is Mode.STALL and not self._stopping.is_set():
                self._changed.wait(POLL_INTERVAL_S * 10)
            mode, delay_s = self._mode, self._delay_s
        if mode is Mode.DROP:
            return False
        if mode is Mode.SLOW:
            time.sleep(delay_s)
        return True
