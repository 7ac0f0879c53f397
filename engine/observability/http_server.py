"""The HTTP server of the metrics port: a non-blocking event loop that answers from copies.

Standard library only. :class:`~regretflow.engine.observability.metrics.MetricsServer` runs it
in a child process of the engine, started by path with ``python -I -S`` (so it imports
neither numba nor a learner, nor anything of the engine): the engine process keeps only a
publisher that hands this process the bodies it serves, so however many clients come, their
sockets, parsing and answers cost the engine's interpreter nothing. The child ends when the
engine closes its end of the control socket, or when the engine dies (kill -9 included: the
kernel closes that end, and the child reads EOF).

The control socket carries frames ``kind (1 byte) | payload length (4 bytes, big-endian) | payload``
from the engine to the child:

- ``D``: a document: status (2 bytes), path length (2), content type length (2), path, content
  type, body;
- ``S``: the document at this path (the payload) is unchanged: the child's copy is fresh again;
- ``H``: health: ready (1 byte), stall seconds and seconds since the last heartbeat (8-byte
  doubles), then the not-ready reason;
- ``P``: the routes the engine serves beside /metrics, one path a line.

and lines ``<path>\\n`` back: "this copy is older than the interval, and a client is waiting".

>>> frames = frame(b"P", b"/\\n/live.json") + frame(b"S", b"/metrics")
>>> list(read_frames(bytearray(frames)))
[(b'P', b'/\\n/live.json'), (b'S', b'/metrics')]
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import resource
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator

#: (status, body, content type)
Answer = tuple[int, bytes, str]
#: Given a request's path, and whether the answer must come now: an answer, or None to park the
#: request until :meth:`HttpServer.resume` is called for that path.
Resolver = Callable[[str, bool], "Answer | None"]

HEADER = struct.Struct("!cI")
DOCUMENT = struct.Struct("!HHH")
HEALTH = struct.Struct("!Bdd")
NOT_FOUND = b"not found: try / (live page), /live.json, /metrics, /healthz or /readyz\n"

HTTP_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpServer:
    """GET and HEAD on one listening socket, answered by ``resolve(path, now)``.

    One non-blocking event loop, so what a connection costs is a socket and a small buffer,
    never a thread: at most ``max_connections`` are open (past it the oldest one still
    sending its request is closed to make room, so a polite client gets in while slow ones
    hold the rest), each has ``request_timeout`` seconds from its accept to send its request
    and take the answer (idle and slowloris clients are closed), and a request's headers may
    be at most 16 KiB. One request per connection. Bound to a loopback address, a request
    whose Host header is not a loopback name is refused with 421 (DNS rebinding: a web page
    cannot read the live page through its own name). A request ``resolve`` parks (None) is
    answered when :meth:`resume` is called for its path, or after ``max_wait`` seconds with
    whatever ``resolve(path, True)`` gives then.

    ``share`` (None: off) caps the share of a CPU the loop takes under load: after a round
    that took w seconds of CPU it pauses w * (1 - share) / share (2 to 20 ms), and a flood
    waits in the listen backlog meanwhile.

    Examples
    --------
    >>> import threading, urllib.request
    >>> listener = socket.create_server(("127.0.0.1", 0))
    >>> server = HttpServer(listener, lambda path, now: (200, path.encode(), "text/plain"), "127.0.0.1")
    >>> thread = threading.Thread(target=server.serve, daemon=True)
    >>> thread.start()
    >>> with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/hello") as r:
    ...     r.status, r.read()
    (200, b'/hello')
    >>> server.stop(); thread.join(); listener.close()
    """

    MAX_HEADER_BYTES = 16 * 1024
    ROUND_PAUSE = 0.002  # shortest pause after a busy round (work then gathers)
    MAX_PAUSE = 0.02  # longest pause: a rare long round (a sweep closing hundreds of sockets) must not stall scrapes
    LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

    def __init__(
        self,
        listener: socket.socket,
        resolve: Resolver,
        host: str,
        max_connections: int | None = None,
        request_timeout: float = 5.0,
        max_wait: float = 1.0,
        share: float | None = None,
    ) -> None:
        self.resolve = resolve
        if max_connections is None:  # leave the process file descriptors for its own files
            max_connections = min(1024, max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2))
        if share is not None and not 0 < share <= 1:
            raise ValueError(f"share: expected a fraction in (0, 1], got {share}")
        self.max_connections, self.request_timeout, self.max_wait = max_connections, request_timeout, max_wait
        self.share = None if share == 1 else share
        self._listener = listener
        listener.setblocking(False)
        self.port: int = listener.getsockname()[1]
        self._loopback = _is_loopback(host)
        self._allowed_hosts = self.LOOPBACK_NAMES | {host.lower(), f"[{host.lower()}]"}
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._watched: dict[socket.socket, Callable[[], None]] = {}
        self._conns: dict[socket.socket, _Connection] = {}
        self._parked: dict[str, dict[socket.socket, float]] = {}  # path -> {socket: parked at}
        self._stopping = False
        self._next_sweep = 0.0

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def watch(self, sock: socket.socket, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` from the loop whenever ``sock`` has data (the engine's control socket)."""
        self._watched[sock] = on_readable
        self._selector.register(sock, selectors.EVENT_READ, None)

    def stop(self) -> None:
        """End :meth:`serve` (within 0.1 s; from the loop itself, at the end of this round)."""
        self._stopping = True

    def resume(self, path: str) -> None:
        """Answer the requests parked for ``path`` (its fresh copy has come: it is theirs, however short the interval)."""
        for sock in list(self._parked.pop(path, {})):
            self._answer_parked(sock, path, now=True)

    # -- the loop ------------------------------------------------------------------------
    def serve(self) -> None:
        """Run the loop until :meth:`stop`; then close every client connection (not the listener)."""
        try:
            while not self._stopping:
                self._round()
        finally:
            for sock in list(self._conns):
                self._close(sock)
            self._selector.close()

    def _round(self) -> None:
        ready = self._selector.select(timeout=0.1)
        started = time.thread_time()  # this thread's CPU time: waiting is not work
        # the engine's frames first: a route or readiness it sent before a client connected is what that client sees
        for key, events in sorted(ready, key=lambda k: k[0].fileobj not in self._watched):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)  # only sockets are registered
            if sock is self._listener:
                self._accept()
            elif sock in self._watched:
                self._watched[sock]()
            elif sock in self._conns:  # else closed earlier in this round (evicted to make room)
                self._try(self._read if events & selectors.EVENT_READ else self._write, sock)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        if ready and self.share is not None:
            worked = time.thread_time() - started
            time.sleep(min(self.MAX_PAUSE, max(self.ROUND_PAUSE, worked * (1 - self.share) / self.share)))

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 0.05
        for path, parked in list(self._parked.items()):
            for sock, since in list(parked.items()):
                if now - since >= self.max_wait:  # the copy did not come in time: answer with what there is
                    del parked[sock]
                    self._answer_parked(sock, path, now=True)
            if not parked:
                del self._parked[path]
        for sock, conn in list(self._conns.items()):
            if now > conn.deadline:
                self._close(sock)

    def _accept(self) -> None:
        # a bounded number per round, so the requests of those accepted are read before a burst
        # of newer connections could evict them
        for _ in range(32):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: the backlog holds the client until next time
                return
            if len(self._conns) >= self.max_connections:
                # full: drop the oldest connection that has not finished sending its request
                sending = [(c.deadline, s) for s, c in self._conns.items() if c.path is None]
                if not sending:
                    sock.close()
                    continue
                self._close(min(sending, key=lambda x: x[0])[1])
            sock.setblocking(False)
            self._conns[sock] = _Connection(time.monotonic() + self.request_timeout)
            self._selector.register(sock, selectors.EVENT_READ, None)
            self._try(self._read, sock)  # a polite client's request is usually there already: answer in this round

    def _try(self, step: Callable[[socket.socket], None], sock: socket.socket) -> None:
        try:
            step(sock)
        except (BlockingIOError, InterruptedError):
            pass
        except Exception:  # noqa: BLE001 - a reset or broken client ends its connection, never the loop
            self._close(sock)

    def _read(self, sock: socket.socket) -> None:
        conn = self._conns[sock]
        data = sock.recv(8192)
        if not data:
            self._close(sock)
            return
        if conn.path is not None:  # the request is in; anything more is ignored
            return
        conn.inbox += data
        end = conn.inbox.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.inbox) > self.MAX_HEADER_BYTES:
                self._respond(sock, conn, 431, b"request headers too large\n", "text/plain", head=False)
            return
        if end > self.MAX_HEADER_BYTES:
            self._respond(sock, conn, 431, b"request headers too large\n", "text/plain", head=False)
            return
        self._handle(sock, conn, bytes(conn.inbox[:end]))

    def _write(self, sock: socket.socket) -> None:
        conn = self._conns[sock]
        assert conn.out is not None  # a connection waits for writability only once _respond has set its answer
        sent = sock.send(conn.out)
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        conn = self._conns.pop(sock, None)
        if conn is not None:
            if conn.path is not None and conn.out is None:
                self._parked.get(conn.path, {}).pop(sock, None)
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
        sock.close()

    # -- requests ------------------------------------------------------------------------
    def _handle(self, sock: socket.socket, conn: _Connection, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._respond(sock, conn, 400, b"bad request\n", "text/plain", head=False)
            return
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            self._respond(sock, conn, 405, b"only GET and HEAD\n", "text/plain", head=False, extra="Allow: GET, HEAD\r\n")
            return
        conn.head = method == "HEAD"
        if self._loopback and "host" in headers and _host_name(headers["host"]) not in self._allowed_hosts:
            self._respond(sock, conn, 421, b"this server answers to its loopback address or localhost only\n", "text/plain", conn.head)
            return
        conn.path = target.split("?", 1)[0]
        answer = self._resolve(conn.path, now=False)
        if answer is None:
            self._parked.setdefault(conn.path, {})[sock] = time.monotonic()
            return
        self._respond(sock, conn, *answer, head=conn.head)

    def _resolve(self, path: str, now: bool) -> Answer | None:
        try:
            return self.resolve(path, now)
        except Exception:  # noqa: BLE001 - a failing route is that request's 500, never the server's end
            return 500, b"internal error\n", "text/plain"

    def _answer_parked(self, sock: socket.socket, path: str, now: bool) -> None:
        conn = self._conns.get(sock)
        if conn is None:
            return
        answer = self._resolve(path, now=now)
        if answer is None:
            if now:  # a resolver must answer when told to: say so rather than hold the client
                answer = 503, b"no answer from the engine in time\n", "text/plain"
            else:
                self._parked.setdefault(path, {})[sock] = time.monotonic()
                return
        self._respond(sock, conn, *answer, head=conn.head)

    def _respond(self, sock: socket.socket, conn: _Connection, status: int, body: bytes, ctype: str, head: bool, extra: str = "") -> None:
        reason = HTTP_REASONS.get(status, "")
        header = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\nCache-Control: no-store\r\n{extra}\r\n"
        ).encode("latin-1")
        if conn.path is None:
            conn.path = ""  # answered before its path was known: no longer a connection still sending its request
        conn.out = memoryview(header if head else header + body)
        self._selector.modify(sock, selectors.EVENT_WRITE, None)
        self._try(self._write, sock)  # most answers fit the socket's buffer at once


class _Connection:
    """One client: its deadline, the request bytes so far, its path once read, the answer still to send."""

    __slots__ = ("deadline", "inbox", "path", "head", "out")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.inbox = bytearray()
        self.path: str | None = None
        self.head = False
        self.out: memoryview | None = None


class Mirror:
    """The child's copies of what the engine publishes, and the resolver of its :class:`HttpServer`.

    /healthz and /readyz are answered from the last health frame (a heartbeat older than the
    stall limit is a stall, whether the engine is stuck or gone quiet); /metrics and the
    engine's routes from a copy at most ``max_age`` seconds old: an older one is asked for
    again (once, however many clients wait) and the requests wait for it.

    Examples
    --------
    >>> a, b = socket.socketpair()
    >>> mirror = Mirror(a, max_age=0.1)
    >>> mirror.resolve("/readyz", False)
    (503, b'not ready: starting\\n', 'text/plain')
    >>> mirror.resolve("/metrics", False) is None, b.recv(100)  # parked, and asked for
    (True, b'/metrics\\n')
    >>> b.sendall(frame(b"D", document(200, "/metrics", "text/plain", b"x 1\\n")))
    >>> mirror.on_control()
    >>> mirror.resolve("/metrics", False)
    (200, b'x 1\\n', 'text/plain')
    >>> a.close(); b.close()
    """

    ASK_AGAIN = 1.0  # a request lost (the engine busy or restarting its publisher) is made again after this long

    def __init__(self, control: socket.socket, max_age: float) -> None:
        self.control = control
        self.max_age = max_age
        self.server: HttpServer | None = None
        self.documents: dict[str, tuple[Answer, float]] = {}  # path -> (answer, when it was fresh)
        self.routes: set[str] = set()
        self.asked: dict[str, float] = {}  # path -> when it was last asked for
        self.ready, self.detail = False, "starting"
        self.stall_seconds, self.beat_at = 120.0, time.monotonic()
        self._inbox = bytearray()

    def resolve(self, path: str, now: bool) -> Answer | None:
        if path == "/healthz":
            stalled = time.monotonic() - self.beat_at > self.stall_seconds
            return (503, b"stalled\n", "text/plain") if stalled else (200, b"ok\n", "text/plain")
        if path == "/readyz":
            return (200, b"ready\n", "text/plain") if self.ready else (503, f"not ready: {self.detail}\n".encode(), "text/plain")
        if path != "/metrics" and path not in self.routes:
            return 404, NOT_FOUND, "text/plain"
        copy = self.documents.get(path)
        if copy is not None and (now or time.monotonic() - copy[1] < self.max_age):
            return copy[0]
        if now:
            return 503, b"no answer from the engine in time\n", "text/plain"
        if time.monotonic() - self.asked.get(path, -math.inf) >= self.ASK_AGAIN:
            self.asked[path] = time.monotonic()
            try:
                self.control.send(path.encode("utf-8", "replace") + b"\n")
            except OSError:  # the engine is gone or not reading: the waiting requests get what there is after max_wait
                pass
        return None

    def on_control(self) -> None:
        """Read what the engine sent; on EOF (the engine closed it, or died) stop the server."""
        try:
            data = self.control.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if self.server is not None:
                self.server.stop()
            return
        self._inbox += data
        for kind, payload in read_frames(self._inbox):
            self.apply(kind, payload)

    def apply(self, kind: bytes, payload: bytes) -> None:
        now = time.monotonic()
        if kind == b"D":
            status, n_path, n_type = DOCUMENT.unpack_from(payload)
            at = DOCUMENT.size
            path = payload[at : at + n_path].decode()
            ctype = payload[at + n_path : at + n_path + n_type].decode()
            self.documents[path] = ((status, payload[at + n_path + n_type :], ctype), now)
            self._fresh(path)
        elif kind == b"S":
            path = payload.decode()
            if path in self.documents:
                self.documents[path] = (self.documents[path][0], now)
            self._fresh(path)
        elif kind == b"H":
            ready, self.stall_seconds, since_beat = HEALTH.unpack_from(payload)
            self.ready, self.detail = bool(ready), payload[HEALTH.size :].decode("utf-8", "replace")
            self.beat_at = now - since_beat
        elif kind == b"P":
            self.routes = set(payload.decode().split("\n")) - {""}

    def _fresh(self, path: str) -> None:
        self.asked.pop(path, None)
        if self.server is not None:
            self.server.resume(path)


def frame(kind: bytes, payload: bytes) -> bytes:
    """One control frame."""
    return HEADER.pack(kind, len(payload)) + payload


def document(status: int, path: str, ctype: str, body: bytes) -> bytes:
    """The payload of a ``D`` frame."""
    p, t = path.encode(), ctype.encode()
    return DOCUMENT.pack(status, len(p), len(t)) + p + t + body


def health(ready: bool, stall_seconds: float, since_beat: float, detail: str) -> bytes:
    """The payload of an ``H`` frame."""
    return HEALTH.pack(ready, stall_seconds, since_beat) + detail.encode("utf-8", "replace")


def read_frames(inbox: bytearray) -> Iterator[tuple[bytes, bytes]]:
    """The whole frames at the start of ``inbox``, removed from it as they are read."""
    while len(inbox) >= HEADER.size:
        kind, length = HEADER.unpack_from(inbox)
        if len(inbox) < HEADER.size + length:
            return
        payload = bytes(inbox[HEADER.size : HEADER.size + length])
        del inbox[: HEADER.size + length]
        yield kind, payload


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _host_name(value: str) -> str:
    """The name of a Host header value, without its port ("[::1]:9108" -> "[::1]")."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def main(argv: list[str] | None = None) -> None:
    """The child process: serve the inherited listener from the copies the engine sends on the control socket."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--max-connections", type=int)
    parser.add_argument("--request-timeout", type=float, default=5.0)
    parser.add_argument("--max-age", type=float, default=0.1)
    parser.add_argument("--share", type=float)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    # Ctrl-C and a stop signal to the whole group are the engine's to handle: it drains, answered
    # meanwhile, and this process ends when the engine closes the control socket
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.nice:
        os.nice(args.nice)
    listener = socket.socket(fileno=args.listen_fd)
    control = socket.socket(fileno=args.control_fd)
    control.setblocking(False)
    mirror = Mirror(control, args.max_age)
    server = HttpServer(listener, mirror.resolve, args.host, args.max_connections, args.request_timeout, share=args.share)
    mirror.server = server
    server.watch(control, mirror.on_control)
    control.send(b"\n")  # up: the engine's start() returns
    server.serve()


if __name__ == "__main__":
    main()
