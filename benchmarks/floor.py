"""The floor under ipcluster's round trip on this machine: ZeroMQ relays that do no work.

``python -m benchmarks.floor`` times a tiny request through three processes (client, relay,
echoing engine) with nothing but ZeroMQ in between, over TCP and over Unix sockets, with a
relay written in Python (a ``zmq_poll`` loop forwarding frames, as the controller does) and with
pyzmq's C ``monitored_queue`` device. No signing, no parsing, no scheduling: whatever a round
trip through ipcluster's controller costs beyond these figures is ipcluster's own work, and a
design that keeps a broker between client and engine cannot go below them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import zmq

ENGINE = b"engine"


def _python_relay(front: str, back: str) -> None:
    """Client ROUTER in front, engine ROUTER behind: swap the two identities and forward."""
    ctx = zmq.Context()
    clients, engines = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    clients.bind(front)
    engines.bind(back)
    poller = zmq.Poller()
    poller.register(clients, zmq.POLLIN)
    poller.register(engines, zmq.POLLIN)
    while True:
        for sock, _ in poller.poll():
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                other = engines if sock is clients else clients
                other.send_multipart([frames[1], frames[0], *frames[2:]], copy=False)


def _c_relay(front: str, back: str) -> None:
    """The same swap-and-forward in C (pyzmq's monitored_queue, monitor unused)."""
    from zmq.devices import monitored_queue

    ctx = zmq.Context()
    clients, engines, monitor = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)
    clients.bind(front)
    engines.bind(back)
    monitor.bind("inproc://unused")
    monitored_queue(clients, engines, monitor, b"in", b"out")


def _echo(url: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, ENGINE)
    sock.connect(url)
    while True:
        sock.send_multipart(sock.recv_multipart())


def round_trip(relay: Callable[[str, str], None], transport: str, calls: int) -> float:
    """Median round trip (µs) of a 200-byte request through ``relay`` to an echoing process."""
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        if transport == "ipc":
            front, back = f"ipc://{tmp}/front", f"ipc://{tmp}/back"
        else:
            ctx = zmq.Context.instance()
            probe = ctx.socket(zmq.ROUTER)
            ports = [probe.bind_to_random_port("tcp://127.0.0.1") for _ in range(2)]
            probe.close(0)
            front, back = (f"tcp://127.0.0.1:{p}" for p in ports)
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=relay, args=(front, back), daemon=True),
                 spawn.Process(target=_echo, args=(back,), daemon=True)]
        for p in procs:
            p.start()
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.RCVTIMEO, 10_000)
        sock.connect(front)
        try:
            payload = [ENGINE, os.urandom(200)]
            for _ in range(50):  # until the echo is connected (the relay drops what it cannot route)
                sock.send_multipart(payload)
                if sock.poll(200):
                    break
            else:
                raise RuntimeError(f"no echo through the relay at {front} after 10 s")
            while sock.poll(100):  # late echoes of the earlier tries
                sock.recv_multipart()
            samples = []
            for i in range(calls + calls // 5):
                t0 = time.perf_counter()
                sock.send_multipart(payload)
                sock.recv_multipart()
                if i >= calls // 5:  # warm-up left out
                    samples.append(time.perf_counter() - t0)
            return statistics.median(samples) * 1e6
        finally:
            sock.close(0)
            ctx.term()
            for p in procs:
                p.kill()
                p.join(5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="round trips per figure (default 3000)")
    args = parser.parse_args(argv)
    print("round trip through a relay that does no work (median, µs):")
    for transport in ("tcp", "ipc"):
        for name, relay in (("Python zmq_poll relay", _python_relay), ("C monitored_queue", _c_relay)):
            print(f"  {transport:3s}  {name:22s} {round_trip(relay, transport, args.calls):6.0f}")


if __name__ == "__main__":
    main()
