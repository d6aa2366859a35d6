"""``ipengine``: the engine process (``python -m ipcluster.engine --file=...``).

Start-up, in order, each step bounded by :attr:`EngineApp.timeout`:

1. wait for the controller's engine connection file (launchers start engines and the controller
   together, so the file may not exist yet);
2. connect the IOPub PUB first (so its connection is up before the first task can print: a PUB
   drops what it sends before the subscriber's subscription arrives), then the DEALER, and send
   ``registration_request``; wait for ``registration_reply``;
3. start the heart and the control thread (both on a side context, so they answer while user
   code runs), capture stdout/stderr, install signal handlers and serve requests.

The engine exits 0 after ``shutdown_request`` or SIGTERM (having sent ``unregistration_request``),
and non-zero, with an ERROR log line saying why, when the connection file never appears, the
controller does not answer or refuses the registration, or the controller's connection is lost
for longer than :attr:`EngineApp.controller_timeout`. Logs go to stderr (the real one: user
output is captured).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from traitlets import Bool, Float, Integer, Unicode, default
from traitlets.config import Application, catch_config_error

from .._argv import last_option_wins
from .._profileconfig import ENGINE_RENAMES, load_profile_config, profile_of_connection_file
from ..error import ConnectionFileError, IPClusterError, ProtocolError
from ..protocol.connection import find_connection_file, read_connection_file, shm_folder, url
from ..protocol.connection import profile_dir as default_profile_dir
from ..protocol.data import DataChannel
from ..protocol.session import Session, auth_error
from .control import Control
from .heart import Heart
from .interrupts import Interrupts
from .iopub import IOPub
from .kernel import Kernel
from .namespace import make_user_module
from .remote import RemoteStartError, StdinLink, candidate_hosts, first_reachable, mpi_rank
from .streams import Flusher, capture, restore


class EngineStartError(IPClusterError):
    """The engine could not join its cluster (message says why)."""


class EngineApp(Application):
    """An IPython parallel engine: registers with a controller and runs its tasks."""

    name = "ipengine"
    description = "Start an engine that joins an ipcluster controller and runs tasks."

    connection_file = Unicode(
        "",
        config=True,
        help="Path of the controller's engine connection file (ipcontroller-engine.json). "
        "Default: the one in the profile's security folder. '-': read it as one line of JSON from "
        "stdin, then exit when stdin closes (how the SSH launcher starts engines, so the key is never "
        "written on the remote host).",
    )
    profile_dir = Unicode(
        "", config=True, help="Profile folder whose security/ holds the connection file (instead of --profile)."
    )
    profile = Unicode("default", config=True, help="Profile name, used when neither --file nor --profile-dir is given.")
    cluster_id = Unicode("", config=True, help="Cluster id: the connection file is ipcontroller-<id>-engine.json.")
    timeout = Float(
        30.0,
        config=True,
        help="Seconds to wait for the connection file to appear, and then for the controller "
        "to answer the registration, before exiting with an error.",
    )
    controller_timeout = Float(
        10.0,
        config=True,
        help="Seconds a lost connection to the controller may stay lost (or the controller "
        "silent) before the engine logs an error and exits.",
    )
    ping_interval = Float(
        1.0,
        config=True,
        help="Seconds between ZeroMQ-level pings on the controller connection, so that a "
        "controller that vanished without closing it is noticed. 0 disables them.",
    )
    iopub_hold_timeout = Float(
        2.0,
        config=True,
        help="Seconds to hold output while the controller's IOPub subscription has not reached "
        "a new engine yet (output sent before it would be lost).",
    )
    data_channel = Bool(
        True,
        config=True,
        help="When the controller is on this host, take large buffers (a request's or a result's "
        "1 MiB or more) straight from and to clients on this host over a Unix socket, instead of "
        "through the controller: half the copies, and the controller never holds them.",
    )
    linger = Float(
        1.0, config=True, help="Seconds to wait, when exiting, for the last messages to be delivered."
    )
    id = Integer(
        None, allow_none=True, config=True,
        help="Engine id to register under (as ipyparallel's IPEngine.id): only the id of an engine that "
        "went away is granted (a Cluster restarting a dead engine passes its id). Default: the next free id.",
    )

    aliases = {
        "file": "EngineApp.connection_file",
        "f": "EngineApp.connection_file",
        "profile-dir": "EngineApp.profile_dir",
        "profile": "EngineApp.profile",
        "cluster-id": "EngineApp.cluster_id",
        "timeout": "EngineApp.timeout",
        "controller-timeout": "EngineApp.controller_timeout",
        "id": "EngineApp.id",
        "log-level": "Application.log_level",
    }
    classes = [Kernel]

    @default("log_level")
    def _default_log_level(self) -> int:
        return 20  # INFO: start-up, registration and exit are worth a line each

    @default("log_format")
    def _default_log_format(self) -> str:
        return "%(asctime)s.%(msecs)03d [%(name)s]%(highlevel)s %(message)s"

    @default("log_datefmt")
    def _default_log_datefmt(self) -> str:
        return "%H:%M:%S"

    def get_default_logging_config(self) -> dict[str, Any]:
        """Log to the process's real stderr: ``sys.stderr`` is replaced by IOPub capture, and
        logging reconfigured later must not follow it there."""
        config = super().get_default_logging_config()
        console = config.get("handlers", {}).get("console")
        if console is not None:
            console["stream"] = "ext://sys.__stderr__"
        return config

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: this engine's rank when an MPI process manager started it (see engine.remote.mpi_rank)
        self.mpi_rank = mpi_rank()
        self._stopped: asyncio.Future[tuple[int, str]] | None = None
        self._interrupts: Interrupts | None = None
        self._kernel: Kernel | None = None
        self._control: Control | None = None

    # -- entry points ------------------------------------------------------------------
    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        """Parse the command line, then read the profile's ``ipengine_config.py`` (flags win)."""
        argv = last_option_wins(argv)
        self.parse_command_line(argv)
        folder = self.config_folder()
        if folder is not None:
            load_profile_config(self, folder / "ipengine_config.py", argv, "IPEngine", ENGINE_RENAMES)

    def config_folder(self) -> Path | None:
        """Whose ``ipengine_config.py`` applies: ``--profile-dir``, the connection file's, ``--profile``'s."""
        if self.profile_dir:
            return Path(self.profile_dir).expanduser()
        if self.connection_file:
            return None if self.connection_file == "-" else profile_of_connection_file(Path(self.connection_file))
        return default_profile_dir(self.profile)

    def start(self) -> int:  # type: ignore[override]
        """Run the engine until it is stopped; return the process exit status."""
        # as in every IPython kernel, user code imports from the current folder, wherever it is:
        # after os.chdir(d) on the engine, modules in d import and functions from them unpickle
        if sys.path[:1] != [""]:
            sys.path.insert(0, "")
        try:
            return asyncio.run(self.run())
        except KeyboardInterrupt:  # SIGINT before registration: the user gave up waiting
            self.log.info("interrupted during start-up")
            return 130

    async def run(self) -> int:
        try:
            info = await self.wait_for_connection_file()
            info = await self.choose_address(info)
        except (EngineStartError, RemoteStartError) as e:
            self.log.error("%s", e)
            return 1
        try:
            return await self._run_connected(info)
        except EngineStartError as e:
            self.log.error("%s", e)
            return 1

    # -- start-up ------------------------------------------------------------------------
    def connection_path(self) -> Path:
        if self.connection_file:
            return Path(self.connection_file).expanduser()
        return find_connection_file(
            "engine", profile=self.profile, cluster_id=self.cluster_id, profile_path=self.profile_dir or None
        )

    async def wait_for_connection_file(self) -> dict[str, Any]:
        """Read the connection file, waiting up to ``timeout`` for it to appear."""
        if self.connection_file == "-":
            return await self.read_stdin_info()
        path = self.connection_path()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        delay = 0.01
        waiting_logged = False
        while True:
            try:
                info = read_connection_file(path, "engine")
                break
            except ConnectionFileError as e:  # there, but not to be used: waiting will not help
                raise EngineStartError(str(e)) from None
            except IPClusterError as e:
                problem = str(e)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise EngineStartError(f"no usable connection file after {self.timeout:g} s: {problem}")
            if not waiting_logged:
                self.log.info("waiting up to %g s for %s", self.timeout, path)
                waiting_logged = True
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.2)
        scheme = info.get("signature_scheme", "hmac-sha256")
        if scheme != "hmac-sha256":
            raise EngineStartError(f"{path}: unsupported signature_scheme {scheme!r}")
        self.log.debug("connection file %s", path)
        return info

    async def read_stdin_info(self) -> dict[str, Any]:
        """The connection info from stdin (``--file=-``); from then on, stdin closing stops us."""
        link = StdinLink(0)
        info = await link.read_info(self.timeout)
        missing = [k for k in ("key", "interface", "engine_port", "iopub_port", "hb_ping_port", "hb_pong_port")
                   if k not in info]
        if missing:
            raise EngineStartError(f"the connection info on stdin lacks {', '.join(missing)}")
        link.watch(self._stdin_closed, grace=self.controller_timeout)
        self.log.debug("connection info read from stdin")
        return info

    def _stdin_closed(self) -> None:
        """The launcher closed our stdin, or died, or its connection broke (lifeline thread)."""
        reason = "stdin closed: the launcher that started this engine stopped it or is gone"
        if self._stopped is None:  # still starting: nothing to unregister
            self.log.error("%s; exiting", reason)
            os._exit(1)
        self._stop_kernel(0, reason)

    async def choose_address(self, info: dict[str, Any]) -> dict[str, Any]:
        """Use the first controller address that answers (all are tried at once).

        Engines on the controller's host use its Unix sockets and skip this. Elsewhere an engine
        that reaches no address exits naming each one it tried, with the reason.
        """
        if url(info, "engine_port").startswith("ipc://"):
            return info
        hosts = candidate_hosts(info)
        if len(hosts) < 2 and not info.get("addresses"):
            return info  # an older connection file: nothing to choose from
        host = await first_reachable(hosts, int(info["engine_port"]), self.timeout)
        if host != hosts[0]:
            self.log.info("controller reachable at %s (of %s)", host, ", ".join(hosts))
        return {**info, "interface": f"tcp://{host}"}

    async def _register(self, dealer: zmq.asyncio.Socket, session: Session, engine_uuid: str,
                        data: DataChannel | None) -> dict[str, Any]:
        """Send ``registration_request``; return the reply's content (or raise EngineStartError)."""
        request = {"uuid": engine_uuid, "hostname": socket.gethostname(), "pid": os.getpid()}
        if data is not None:
            request["data_url"] = data.url
        if self.id is not None:
            request["id"] = self.id
        _, frames = session.serialize("registration_request", request)
        await dealer.send_multipart(frames)
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    frames = await dealer.recv_multipart(copy=False)
                    try:
                        _, msg = session.unpack(frames)
                    except ProtocolError as e:
                        refusal = auth_error(frames)
                        if refusal is not None:
                            raise EngineStartError(f"the controller refused our signature: {refusal}") from None
                        self.log.warning("dropped a message that does not unpack: %s", e)
                        continue
                    if msg["msg_type"] == "registration_reply":
                        break
                    self.log.warning("ignored %s while waiting for registration_reply", msg["msg_type"])
        except TimeoutError:
            raise EngineStartError(
                f"the controller did not answer the registration within {self.timeout:g} s"
            ) from None
        content = msg["content"]
        if content.get("status") != "ok":
            reason = content.get("evalue") or content.get("ename") or "no reason given"
            raise EngineStartError(f"the controller refused the registration: {reason}")
        if not isinstance(content.get("id"), int):
            raise EngineStartError(f"registration_reply without an engine id: {content!r}")
        return content

    async def _run_connected(self, info: dict[str, Any]) -> int:
        """Connect, register, serve until stopped; return the exit status."""
        t0 = time.perf_counter()
        self._stopped = asyncio.get_running_loop().create_future()
        session = Session(info["key"])
        engine_uuid = str(uuid.uuid4())
        ctx = zmq.asyncio.Context()
        side_ctx = zmq.Context()  # heart and control threads: they answer while user code runs
        # an XPUB is a PUB that also tells us when the subscriber is there (see IOPub)
        pub: zmq.Socket[Any] = zmq.Socket(ctx, zmq.XPUB)  # synchronous: IOPub sends from two threads
        dealer = ctx.socket(zmq.DEALER)
        monitor: zmq.Socket[Any] | None = None
        data: DataChannel | None = None
        started: list[Any] = []  # threads to join (they have a join(timeout))
        try:
            monitor = self._connect(info, engine_uuid, ctx, pub, dealer)
            engine_url = url(info, "engine_port")
            if self.data_channel and engine_url.startswith("ipc://"):  # the controller is on this host
                data = DataChannel(ctx, engine_uuid, self.log, shm_folder(info), write_shm=True)
                try:
                    data.bind(os.path.dirname(engine_url[len("ipc://"):]), engine_uuid)
                except zmq.ZMQError as e:  # everything still works through the controller
                    self.log.warning("no data channel (cannot listen on %s: %s)", data.url, e.strerror)
                    data.close()
                    data = None
            reply = await self._register(dealer, session, engine_uuid, data)
            engine_id: int = reply["id"]
            session.max_frame = int(reply.get("max_frame_bytes") or 0)  # larger results are answered as errors
            self.log.info(
                "registered as engine %i with %s (uuid %s%s) in %.0f ms",
                engine_id, url(info, "engine_port"), engine_uuid,
                "" if self.mpi_rank is None else f", MPI rank {self.mpi_rank}", (time.perf_counter() - t0) * 1000,
            )
            # SIGTERM and controller loss stop the kernel: it finishes the current task only
            interrupts = Interrupts(self.log, lambda: self._stop_kernel(0, "SIGTERM"))
            self._interrupts = interrupts
            iopub = IOPub(pub, session, engine_id, interrupts, self.log, self.iopub_hold_timeout)
            kernel = self._kernel = Kernel(
                parent=self,
                socket=dealer,
                session=session,
                iopub=iopub,
                interrupts=interrupts,
                engine_id=engine_id,
                engine_uuid=engine_uuid,
                user_module=make_user_module(),
                on_stop=self._request_stop,
                data=data,
            )
            heart = Heart(side_ctx, url(info, "hb_ping_port"), url(info, "hb_pong_port"), engine_uuid.encode(), self.log)
            self._control = Control(
                side_ctx, url(info, "engine_port"), engine_uuid.encode(), session, self.log,
                monitor=monitor, controller_timeout=self.controller_timeout, on_lost=self._controller_lost,
            )
            flusher = Flusher(iopub)
            _start_without_signals([heart, self._control, flusher], started)
            monitor = None  # the control thread owns it now
            code, reason = await self._serve(kernel, iopub, flusher)
            if code == 0:
                _, frames = session.serialize("unregistration_request", {"id": engine_id})
                kernel.send(frames)
                dealer.setsockopt(zmq.LINGER, int(self.linger * 1000))
                iopub.close(self.linger)
                self.log.info("engine %i stopped (%s)", engine_id, reason)
            else:
                iopub.close(0)
                self.log.error("engine %i exiting: %s", engine_id, reason)
            return code
        finally:
            dealer.disable_monitor()
            if monitor is not None:
                monitor.close(linger=0)
            dealer.close()
            pub.close()
            if data is not None:
                data.close()
            side_ctx.term()  # ends the heart and control threads, which close their sockets
            for thread in started:
                thread.join(1.0)
            ctx.term()

    def _connect(
        self, info: dict[str, Any], engine_uuid: str, ctx: zmq.Context[Any], pub: zmq.Socket[Any], dealer: Any
    ) -> zmq.Socket[Any]:
        """Connect IOPub, then the DEALER (watched by a monitor); return the monitor's socket."""
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 100_000)
        pub.connect(url(info, "iopub_port"))  # first, so it is up before any output
        dealer.setsockopt(zmq.IDENTITY, engine_uuid.encode())
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 0)  # replies queue while the controller is briefly away
        dealer.setsockopt(zmq.RCVHWM, 0)
        if self.ping_interval > 0:
            dealer.setsockopt(zmq.HEARTBEAT_IVL, int(self.ping_interval * 1000))
            dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.controller_timeout * 1000))
        monitor_url = f"inproc://ipengine-monitor-{engine_uuid}"
        dealer.monitor(monitor_url, zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        monitor: zmq.Socket[Any] = zmq.Socket(ctx, zmq.PAIR)  # read by the control thread
        monitor.connect(monitor_url)
        dealer.connect(url(info, "engine_port"))
        return monitor

    async def _serve(self, kernel: Kernel, iopub: IOPub, flusher: Flusher) -> tuple[int, str]:
        """Serve requests with output captured and signal handlers installed, until stopped."""
        assert self._stopped is not None and self._interrupts is not None
        previous_streams = capture(iopub)
        self._interrupts.install()
        serve = asyncio.create_task(kernel.serve(), name="serve")
        try:
            waits: set[asyncio.Future[Any]] = {self._stopped, serve}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if self._stopped.done():
                return self._stopped.result()
            exc = serve.exception()
            if exc is not None:
                self.log.error("the request loop failed", exc_info=exc)
            return 1, f"the request loop ended: {exc!r}"
        finally:
            self._interrupts.uninstall()
            serve.cancel()
            await asyncio.gather(serve, return_exceptions=True)
            restore(previous_streams)
            flusher.stop()
            iopub.end()

    def _request_stop(self, code: int, reason: str) -> None:
        """Ask the engine to stop (from any thread, or a signal handler: it only schedules)."""
        stopped = self._stopped
        if stopped is None:
            return

        def resolve() -> None:
            if not stopped.done():
                stopped.set_result((code, reason))

        stopped.get_loop().call_soon_threadsafe(resolve)

    @property
    def kernel(self) -> "Kernel | None":
        """The engine's request loop once registered (its namespace, shell and IOPub), for code
        running on the engine that serves it some other way (``bind_kernel``, ``publish_data``)."""
        return self._kernel

    def _stop_kernel(self, code: int, reason: str) -> None:
        if self._kernel is not None:
            self._kernel.stop(code, reason)
        else:
            self._request_stop(code, reason)

    def _controller_lost(self, reason: str) -> None:
        """The controller stayed away (called by the control thread): stop, even if user code
        runs; exit the hard way if it ignores the interrupt for another ``controller_timeout``."""
        self._stop_kernel(1, reason)
        if self._interrupts is not None and self._interrupts.armed and self._control is not None:
            self._control.signal_main(signal.SIGINT)
        backstop = threading.Timer(self.controller_timeout, self._force_exit, (reason,))
        backstop.daemon = True
        backstop.start()

    def _force_exit(self, reason: str) -> None:
        self.log.error("%s, and the running code did not stop; exiting now", reason)
        os._exit(1)


def _start_without_signals(threads: list[Any], started: list[Any]) -> None:
    """Start threads (appending each to ``started``) with SIGINT/SIGTERM blocked in them: Python
    runs handlers on the main thread only, and a signal the kernel delivered to another thread
    would not wake a sleeping main thread (threads inherit the signal mask of their starter)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        for thread in threads:
            thread.start()
            started.append(thread)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def main(argv: list[str] | None = None) -> None:
    """The ``ipengine`` console script."""
    app = EngineApp.instance()
    app.initialize(argv)
    sys.exit(app.start())


__all__ = ["EngineApp", "EngineStartError", "main"]
