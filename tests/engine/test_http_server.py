"""The metrics HTTP server holds under idle, slowloris and flooding clients, from a child process
that lives and dies with the engine (functional checks; tests/benchmarks/bench_http.py measures
throughput and latency)."""

from __future__ import annotations

import ast
import errno
import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from regretflow.engine.observability import http_server
from regretflow.engine.observability.http_server import HttpServer, Mirror
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


def gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie waiting for its new parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True


def test_get_head_and_the_existing_routes(server):
    server.routes["/live.json"] = lambda: (b'{"x": 1}', "application/json")
    status, headers, body = request(server)
    assert status == 200 and b"regretflow_events_total" in body and int(headers["Content-Length"]) == len(body)
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    status, head_headers, head_body = request(server, "HEAD")
    assert status == 200 and head_body == b"" and head_headers["Content-Length"] == headers["Content-Length"]
    assert wait_for(lambda: request(server, path="/live.json")[::2] == (200, b'{"x": 1}'))  # routes reach the child with a tick
    assert request(server, path="/healthz")[::2] == (200, b"ok\n")
    assert request(server, path="/readyz")[::2] == (503, b"not ready: starting\n")
    assert request(server, path="/nope")[0] == 404
    assert request(server, "POST")[0] == 405


def test_the_exposition_bytes_are_the_registrys(server):
    server.metrics.events.labels(model="m", kind="observe").inc(7)
    served = request(server)[2]
    assert served == server.metrics.exposition()  # nothing moved between the two renders: the same bytes


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9108", "127.0.0.2.nip.io", "10.0.0.1"])
def test_a_foreign_host_header_is_refused_on_loopback(server, host):
    status, _, body = request(server, path="/live.json", host=host)
    assert status == 421 and b"loopback" in body


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1:{port}", "127.0.0.1"])
def test_loopback_host_headers_are_served(server, host):
    assert request(server, path="/healthz", host=host.format(port=server.port))[0] == 200


def test_exposition_is_rendered_once_per_interval_however_many_scrapes(server):
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
    assert server.expositions_rendered == 1  # the interval is an hour here
    eager = MetricsServer(Metrics(["m"], {"m": ["all"]}), HealthState(), "127.0.0.1", 0, exposition_max_age=0.0).start()
    try:
        request(eager), request(eager)
        assert eager.expositions_rendered == 2  # an expired copy is rendered again
    finally:
        eager.stop()


def test_readiness_its_reason_and_a_stalled_heartbeat_reach_the_server(server):
    health = server.health
    health.detail = "waiting for the Kafka broker at 127.0.0.1:1 (source, 3 s): refused"
    assert wait_for(lambda: request(server, path="/readyz")[::2] == (503, b"not ready: " + health.detail.encode() + b"\n"))
    health.ready = True
    assert wait_for(lambda: request(server, path="/readyz")[::2] == (200, b"ready\n"))
    health.heartbeat -= 1000.0  # no batch and no beat for longer than stall_seconds
    assert wait_for(lambda: request(server, path="/healthz")[::2] == (503, b"stalled\n"))
    health.beat()
    assert wait_for(lambda: request(server, path="/healthz")[0] == 200)


def test_a_route_added_later_is_served_and_a_failing_route_is_a_500(server):
    def broken():
        raise RuntimeError("boom")

    server.routes["/broken"] = broken
    assert wait_for(lambda: request(server, path="/broken")[0] == 500)
    assert request(server)[0] == 200  # the publisher goes on


def test_the_server_process_imports_the_standard_library_only():
    tree = ast.parse(open(http_server.__file__).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported - sys.stdlib_module_names


def test_stop_ends_the_server_process_and_closes_the_port():
    srv = MetricsServer(Metrics(["m"], {"m": ["all"]}), HealthState(), "127.0.0.1", 0).start()
    assert request(srv, path="/healthz")[0] == 200
    srv.stop()
    assert srv.child.returncode == 0
    assert refused(srv.port)


def test_a_taken_port_is_an_oserror_at_construction(server):
    with pytest.raises(OSError) as info:
        MetricsServer(Metrics(["m"], {"m": ["all"]}), HealthState(), "127.0.0.1", server.port)
    assert info.value.errno == errno.EADDRINUSE


def test_the_server_process_dies_with_the_engine_even_by_kill_9():
    code = (
        "import sys, time\n"
        "from regretflow.engine.observability.metrics import HealthState, Metrics, MetricsServer\n"
        "s = MetricsServer(Metrics(['m'], {'m': ['all']}), HealthState(), '127.0.0.1', 0).start()\n"
        "print(s.port, s.child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    engine = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port, child = map(int, engine.stdout.readline().split())
        assert request(type("S", (), {"port": port}), path="/healthz")[0] == 200
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait()
        assert wait_for(lambda: gone(child)), "the server process outlived its engine"
        assert refused(port)
    finally:
        engine.kill()
        engine.wait()


def test_a_server_process_that_dies_is_replaced(server):
    first = server.child.pid
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: server.children_started == 2)
    assert server.child.pid != first
    assert request(server, path="/healthz")[0] == 200
    assert request(server)[0] == 200


def test_an_engine_that_does_not_answer_gets_the_last_copy_then_a_503():
    """The child's side alone: a control socket whose engine never replies (a long stall)."""
    engine_end, child_end = socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    mirror = Mirror(child_end, max_age=0.0)
    srv = HttpServer(listener, mirror.resolve, "127.0.0.1", max_wait=0.2)
    mirror.server = srv
    srv.watch(child_end, mirror.on_control)
    thread = threading.Thread(target=srv.serve)
    thread.start()
    try:
        assert request(srv)[::2] == (503, b"no answer from the engine in time\n")
        assert engine_end.recv(100).startswith(b"/metrics\n")  # it was asked for
        mirror.documents["/metrics"] = ((200, b"x 1\n", "text/plain"), 0.0)  # a copy long expired
        assert request(srv)[::2] == (200, b"x 1\n")
        assert request(srv, path="/healthz")[0] == 200  # health needs no answer from the engine
    finally:
        srv.stop()
        thread.join()
        listener.close()
        engine_end.close()
        child_end.close()


def test_idle_and_slowloris_clients_are_closed_and_a_polite_scrape_succeeds_meanwhile(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(120)]
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
    for s in slow:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
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


def test_the_connection_cap_is_enforced_and_polite_clients_still_get_in():
    """The server process's loop, run in a thread here to count its connections."""
    listener = socket.create_server(("127.0.0.1", 0))
    srv = HttpServer(listener, lambda path, now: (200, b"ok\n", "text/plain"), "127.0.0.1", max_connections=20, request_timeout=60.0)
    thread = threading.Thread(target=srv.serve)
    thread.start()
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
        thread.join()
        listener.close()


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
