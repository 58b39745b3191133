"""A TCP hop to PostgreSQL that a test can cut like a pulled cable: a relay process that accepts TCP on
127.0.0.1 and forwards each connection to the server (its unix socket, or host:port), until told to blackhole.

While cut, every connection stays open and nothing moves in either direction: no byte forwarded, no RST, no
FIN, no new connection accepted (the kernel still completes the handshake into the listen backlog, as a
peer's kernel would before the cable went). Each side's bytes wait in the socket buffers, and on heal they
are delivered, in order. That is what a short partition does to TCP: an unacknowledged segment is
retransmitted (for ~15 minutes with Linux's default tcp_retries2) and lands when the link returns, so the
application sees a delay, never a hole in the stream (a stream with bytes silently dropped from its middle is
not something TCP ever delivers). A partition longer than the retransmission window ends differently (the
sender's kernel gives up with ETIMEDOUT and the other side learns of it from keepalives, or never); this relay
models the short one, the one where a cut-off worker comes back holding a lease it no longer owns.

It needs no privilege, so it runs the same in CI as here, and it only ever listens on 127.0.0.1. The relay
is a real process (`python -m tests.blackhole --to SOCKET`), driven over its stdin and stdout: it prints
`listening PORT` once, then answers each `cut` / `heal` line with `ok cut` / `ok heal` once it is in effect.
`Blackhole` starts and drives it from a test.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import subprocess
import sys
from pathlib import Path

#: How much one read takes from a socket: one PostgreSQL message or a good part of a result.
CHUNK = 65536


class Relay:
    """The relay's single-threaded loop: pairs of (TCP client, unix upstream) sockets and their pending bytes."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.selector = selectors.DefaultSelector()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.peer: dict[socket.socket, socket.socket] = {}
        #: Bytes read from a socket and not yet written to its peer, by the socket they are headed to.
        self.pending: dict[socket.socket, bytearray] = {}
        self.cut = False

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def serve(self) -> None:
        """Forward until stdin closes, obeying the `cut` / `heal` lines it carries."""
        self.selector.register(sys.stdin, selectors.EVENT_READ)
        self._watch()
        print(f"listening {self.port}", flush=True)
        while True:
            for key, events in self.selector.select():
                if key.fileobj is sys.stdin:
                    if not self._command(sys.stdin.readline()):
                        return
                elif self.cut:
                    continue  # selected before the cut took effect: it waits for the heal
                elif key.fileobj is self.listener:
                    self._accept()
                elif events & selectors.EVENT_READ and key.fileobj in self.peer:
                    self._read(key.fileobj)
                elif events & selectors.EVENT_WRITE and key.fileobj in self.peer:
                    self._flush(key.fileobj)

    def _command(self, line: str) -> bool:
        word = line.strip()
        if not word:
            return False  # stdin closed: the test is done with us
        if word not in {"cut", "heal"}:
            raise SystemExit(f"unknown command {word!r}")
        self.cut = word == "cut"
        self._watch()
        print(f"ok {word}", flush=True)
        return True

    def _watch(self) -> None:
        """Register each socket for what it may do now: nothing at all while cut."""
        for sock in [self.listener, *self.peer]:
            events = 0 if self.cut else (selectors.EVENT_READ if sock is self.listener else self._events(sock))
            if sock in self.selector.get_map():
                if events:
                    self.selector.modify(sock, events)
                else:
                    self.selector.unregister(sock)
            elif events:
                self.selector.register(sock, events)

    def _events(self, sock: socket.socket) -> int:
        """Read while the peer's queue is short (back-pressure as TCP's window gives); write what waits."""
        events = selectors.EVENT_READ if len(self.pending[self.peer[sock]]) < CHUNK * 4 else 0
        return events | (selectors.EVENT_WRITE if self.pending[sock] else 0)

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        try:
            server = self._connect()
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setblocking(False)
        self.peer.update({client: server, server: client})
        self.pending.update({client: bytearray(), server: bytearray()})
        self._watch()

    def _connect(self) -> socket.socket:
        """A new connection to the server: its unix socket file, or host:port."""
        if self.upstream.startswith("/"):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.upstream)
            except OSError:
                server.close()
                raise
            return server
        host, _, port = self.upstream.rpartition(":")
        return socket.create_connection((host, int(port)))

    def _read(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        self.pending[self.peer[sock]] += data
        self._flush(self.peer[sock])

    def _flush(self, sock: socket.socket) -> None:
        queue = self.pending[sock]
        try:
            sent = sock.send(queue) if queue else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(sock)
            return
        del queue[:sent]
        self._watch()

    def _close(self, sock: socket.socket) -> None:
        """One side closed: close both, once what was queued for the other side is sent."""
        other = self.peer.pop(sock)
        del self.peer[other]
        leftover = self.pending.pop(other)
        del self.pending[sock]
        for s in (sock, other):
            if s in self.selector.get_map():
                self.selector.unregister(s)
        try:
            other.setblocking(True)
            other.sendall(leftover)
        except OSError:
            pass  # that side is gone too
        sock.close()
        other.close()


class Blackhole:
    """The relay process in front of PostgreSQL at `upstream` (its unix socket file, or host:port), as a test
    drives it."""

    def __init__(self, upstream: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.blackhole", "--to", upstream],
                                     cwd=Path(__file__).resolve().parents[1], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        word, port = self.proc.stdout.readline().split()
        assert word == "listening", word
        self.port = int(port)

    def cut(self) -> None:
        """Stop every byte, both ways, on every connection; returns once the relay forwards nothing more."""
        self._say("cut")

    def heal(self) -> None:
        """Forward again: what either side sent during the cut is delivered now, in order."""
        self._say("heal")

    def _say(self, word: str) -> None:
        self.proc.stdin.write(f"{word}\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        assert reply == f"ok {word}", f"the relay answered {reply!r} to {word!r}"

    def close(self) -> None:
        """End the relay (its connections close with it)."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def upstream(settings_dict: dict) -> str:
    """Where a Django database's server listens, as `--to` takes it: its unix socket file, or host:port."""
    host, port = settings_dict["HOST"], settings_dict.get("PORT") or "5432"
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"


def main(argv: list[str] | None = None) -> None:
    """The relay process's entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", required=True, help="PostgreSQL's unix socket file (…/.s.PGSQL.5432) or host:port")
    Relay(parser.parse_args(argv).to).serve()


if __name__ == "__main__":
    main()
