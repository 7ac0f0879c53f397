"""The metrics HTTP server holds under idle, slowloris and flooding clients (functional checks;
tests/benchmarks/bench_http.py measures throughput and latency)."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time

import pytest

from regretflow.engine.observability.metrics import HealthState, Metrics, MetricsServer

TIMEOUT = 1.0  # the server's request timeout in these tests


@pytest.fixture
def server():
    metrics = Metrics(["m"], {"m": ["all"]})
    srv = MetricsServer(
        metrics, HealthState(), "127.0.0.1", 0, max_connections=200, request_timeout=TIMEOUT, exposition_max_age=3600.0
    ).start()
    yield srv
    srv.stop()


def request(server, method="GET", path="/metrics", host=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{server.port}")
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the peer closed: recv returns b"" (or the connection was reset)."""
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_for(predicate, limit=30.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_get_head_and_the_existing_routes(server):
    server.routes["/live.json"] = lambda: (b'{"x": 1}', "application/json")
    status, headers, body = request(server)
    assert status == 200 and b"regretflow_events_total" in body and int(headers["Content-Length"]) == len(body)
    status, head_headers, head_body = request(server, "HEAD")
    assert status == 200 and head_body == b"" and head_headers["Content-Length"] == headers["Content-Length"]
    assert request(server, path="/live.json")[::2] == (200, b'{"x": 1}')
    assert request(server, path="/healthz")[::2] == (200, b"ok\n")
    assert request(server, path="/readyz")[0] == 503
    assert request(server, path="/nope")[0] == 404
    assert request(server, "POST")[0] == 405


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9108", "127.0.0.2.nip.io", "10.0.0.1"])
def test_a_foreign_host_header_is_refused_on_loopback(server, host):
    status, _, body = request(server, path="/live.json", host=host)
    assert status == 421 and b"loopback" in body


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1:{port}", "127.0.0.1"])
def test_loopback_host_headers_are_served(server, host):
    assert request(server, path="/healthz", host=host.format(port=server.port))[0] == 200


def test_exposition_is_rendered_once_per_interval_however_many_scrapes(server):
    before = server.expositions_rendered
    results = []

    def scrape():
        for _ in range(10):
            results.append(request(server)[0])

    threads = [threading.Thread(target=scrape) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 160
    assert server.expositions_rendered - before <= 1
    server.exposition_max_age = 0.0  # an expired copy is rendered again
    request(server), request(server)
    assert server.expositions_rendered - before >= 2


def test_idle_and_slowloris_clients_are_closed_and_a_polite_scrape_succeeds_meanwhile(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(120)]
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
    for s in slow:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    assert wait_for(lambda: server.open_connections >= 150)
    stop = threading.Event()

    def drip():  # slowloris: one header byte at a time, forever
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(0.1)

    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        for _ in range(5):
            assert request(server)[0] == 200  # while they are held
        assert all(closed_by_server(s) for s in idle + slow)
    finally:
        stop.set()
        dripper.join()
        for s in idle + slow:
            s.close()
    assert wait_for(lambda: server.open_connections == 0)


def test_the_connection_cap_is_enforced_and_polite_clients_still_get_in():
    metrics = Metrics(["m"], {"m": ["all"]})
    srv = MetricsServer(metrics, HealthState(), "127.0.0.1", 0, max_connections=20, request_timeout=60.0).start()
    held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(50)]
    try:
        assert all(closed_by_server(s) for s in held[:30])  # past the cap the oldest waiting ones make room
        # the 50th connect can return before the server's loop has accepted it: wait for the count to settle
        deadline = time.monotonic() + 10
        while srv.open_connections < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.open_connections == 20
        assert closed_count(held[30:]) == 0
        assert request(srv)[0] == 200  # a polite client gets in (one more of the held ones makes room)
        assert srv.open_connections <= 20
        assert closed_count(held[30:]) == 1
    finally:
        for s in held:
            s.close()
        srv.stop()


def closed_count(socks, wait=0.5) -> int:
    """How many of ``socks`` the server has closed (readable at once, and reading gives EOF or a reset)."""
    readable, _, _ = select.select(socks, [], [], wait)
    closed = 0
    for sock in readable:
        sock.setblocking(False)
        try:
            closed += sock.recv(1) == b""
        except ConnectionResetError:
            closed += 1
        except BlockingIOError:
            pass
    return closed


def test_oversized_headers_and_garbage_get_an_answer_not_a_crash(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000)
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"\x00\xff garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert request(server)[0] == 200


def test_a_running_engine_learns_the_same_under_500_idle_100_slowloris_and_a_16_client_flood():
    """The issue's attack against a live engine (throughput and latency figures: bench_http.py):
    every event is answered exactly as in a quiet run, every polite scrape succeeds, and the
    flood is served from the cached exposition."""
    from regretflow.connectors.memory import MemorySink, MemorySource
    from regretflow.engine.config import parse_config
    from regretflow.engine.runtime.loop import Engine
    from tests.conftest import regression_config_dict, regression_stream

    payloads = regression_stream(15_000)

    def run(attacked: bool):
        config = parse_config(regression_config_dict(metrics={"port": 0}))
        answers = MemorySink()
        engine = Engine(config, MemorySource(payloads), answers, MemorySink())
        if not attacked:
            engine.run()
            return answers.records, None
        port, stop, done = engine.server.port, threading.Event(), threading.Event()
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(500)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        for s in slow:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        seen = {"flood": 0, "polite": []}

        def flood():
            while not stop.is_set():
                try:
                    seen["flood"] += request(engine.server)[0] == 200
                except OSError:
                    pass

        def polite():  # a failure while events remain counts; after the last one the server shuts down
            while not stop.is_set() and not done.is_set():
                try:
                    seen["polite"].append(request(engine.server)[0])
                except OSError as exc:
                    if engine.events_seen < len(payloads):
                        seen["polite"].append(repr(exc))
                time.sleep(0.05)

        def drip():
            while not stop.is_set():
                for s in slow:
                    try:
                        s.send(b"X")
                    except OSError:
                        pass
                time.sleep(0.1)

        threads = [threading.Thread(target=f) for f in [polite, drip] + [flood] * 16]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)  # the clients are at it before the first event
            started, renders = time.monotonic(), engine.server.expositions_rendered
            engine.run()
            done.set()
            elapsed, renders = time.monotonic() - started, engine.server.expositions_rendered - renders
        finally:
            stop.set()
            for t in threads:
                t.join()
            for s in held + slow:
                s.close()
        assert seen["polite"] and set(seen["polite"]) == {200}, seen["polite"]
        assert seen["flood"] > 0
        # however many scrapes came, the exposition was rendered at most once per interval
        assert renders <= elapsed / engine.server.exposition_max_age + 2
        return answers.records, seen

    quiet, _ = run(attacked=False)
    loud, seen = run(attacked=True)
    assert loud == quiet and len(quiet) > 0
