"""``ipcontroller``: the controller process.

One process holds every queue: it binds the client, engine, iopub and heartbeat sockets on
localhost (unless told otherwise), writes the two connection files (owner-only) into the
profile's ``security/`` folder, serves until SIGTERM/SIGINT or a client's shutdown request, and
removes its connection files on the way out.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import zmq
from traitlets import Bool, Float, Integer, TraitError, Unicode, default, observe, validate
from traitlets.config import Application, catch_config_error

from .._argv import last_option_wins
from .._profileconfig import CONTROLLER_RENAMES, load_profile_config
from . import ipp_config
from ..error import IPClusterError
from ..protocol.connection import (
    connection_file_name,
    profile_dir as default_profile_dir,
    security_dir,
    write_private_json,
)
from ..protocol.session import Session, new_key
from ..protocol.shm import make_folder
from .daskscheduler import DaskScheduler
from .db import MemoryStore, TaskStore
from .hub import Hub
from .replay import ReplayGuard
from .router import Router
from .schedulers import SCHEMES

#: db_class values, and ipyparallel's names for them (matched on the last dotted part, any case)
DB_CLASSES = {"memory": "memory", "dictdb": "memory", "sqlite": "sqlite", "sqlitedb": "sqlite",
              "none": "none", "nodb": "none"}

#: the largest frame taken where only small ones belong (subscriptions, heartbeats)
SMALL_FRAME = 64 * 1024


class ControllerApp(Application):
    name = "ipcontroller"
    description = "Start the ipcluster controller: the hub that engines and clients connect to."

    profile = Unicode("default", config=True, help="Name of the IPython profile whose security folder holds the connection files.")
    profile_dir = Unicode("", config=True, help="Profile directory (default: $IPYTHONDIR/profile_<profile>).")
    cluster_id = Unicode("", config=True, help="Cluster id: lets several controllers share a profile (it appears in the connection file names).")
    ip = Unicode("127.0.0.1", config=True, help="Interface to listen on. Use '*' or '0.0.0.0' to accept engines from other hosts.")
    location = Unicode("", config=True, help="Address that clients and engines should connect to (default: ip, or this host's name when listening on all interfaces).")
    client_port = Integer(0, config=True, help="Port for client requests (0: pick a free one).")
    engine_port = Integer(0, config=True, help="Port for engine registration and tasks (0: pick a free one).")
    iopub_port = Integer(0, config=True, help="Port clients subscribe to for engine output (0: pick a free one).")
    iopub_engine_port = Integer(0, config=True, help="Port engines publish their output to (0: pick a free one).")
    hb_ping_port = Integer(0, config=True, help="Heartbeat ping port (0: pick a free one).")
    hb_pong_port = Integer(0, config=True, help="Heartbeat pong port (0: pick a free one).")
    hb_period = Float(1.0, config=True, help="Seconds between heartbeats.")
    hb_misses = Integer(3, config=True, help="Heartbeats an engine may miss in a row before it is declared dead "
                                            "(detection time is about hb_period * (hb_misses + 1) seconds).")
    interrupt_grace_period = Float(3.0, config=True, help="Seconds a running task that was aborted "
                                   "(ar.abort(running=True)) or passed its timeout gets to stop after its engine was "
                                   "sent SIGINT; then the controller kills the engine (SIGKILL, through the engine's "
                                   "control thread), and a Cluster that supervises it starts a new one under its id.")
    task_kill_limit = Integer(2, config=True, help="A load-balanced task that was running on this many engines when "
                              "they died (crash, segfault, OOM kill) fails with TaskKilledEngines instead of being "
                              "retried on another engine, whatever retries it has left. 0: no limit.")
    client_timeout = Float(30.0, config=True, help="Seconds a client that pings (ipcluster clients ping every "
                           "Client.controller_hb_period while they wait on results) may stay silent before the "
                           "controller takes it for gone (killed, or its host unreachable); see drop_orphaned_tasks. "
                           "Clients that never ping are never taken for gone. 0: never.")
    drop_orphaned_tasks = Bool(True, config=True, help="When a client closes or goes silent (client_timeout), abort "
                               "its load-balanced tasks not yet given to an engine, so one dead notebook's queue does "
                               "not hold the engines from other clients. Tasks already running finish and their "
                               "results are kept. False: they run anyway, as in ipyparallel.")
    engine_timeout = Float(120.0, config=True, help="Seconds a load-balanced task may wait while no engine at all is "
                           "registered; then it fails with NoEnginesError (engines that register in time run it as "
                           "usual). 0: wait forever, as in ipyparallel. Where engines start late (batch jobs "
                           "waiting in a queue), raise it, or set 0.")
    task_scheme = Unicode("leastload", config=True, help=f"Load-balancing scheme: one of {', '.join(SCHEMES)}.")
    hwm = Integer(64, config=True, help="Most load-balanced tasks outstanding on one engine (0: unlimited). "
                  "Within it the limit adapts to keep about queue_time seconds of work on each engine: "
                  "tiny tasks queue deep so engines never idle between them, long ones two at a time so "
                  "none waits behind a long task while another engine is free, and engines joining "
                  "later, and retries, still find work here. 1 or 2 fixes the limit.")
    queue_time = Float(0.05, config=True, help="Seconds of work the scheduler aims to keep queued on each engine.")
    max_records = Integer(20_000, config=True, help="Most task records kept in memory (about 1.5 KB each); "
                          "the oldest finished ones are dropped first.")
    max_result_bytes = Integer(64 << 20, config=True, help="Bytes of result buffers the controller keeps for get_result (oldest evicted first).")
    max_result_size = Integer(1 << 20, config=True, help="Results larger than this many bytes are routed to their client but not kept.")
    db_class = Unicode("memory", config=True, help="Where task records live. 'memory' (the default): in the "
                       "controller only, gone when it stops. 'sqlite': the same records in memory, with the "
                       "finished ones also written to sqlite_file, so that a controller restarted on that file "
                       "still answers get_result and result_status for them (within the same bounds: "
                       "max_records, max_result_bytes, max_result_size). 'none': memory, keeping no results "
                       "(max_result_bytes 0). ipyparallel's names DictDB, SQLiteDB and NoDB are accepted.")
    sqlite_file = Unicode(config=True, help="The SQLite file of db_class 'sqlite' (created owner-only, mode 0600; "
                          "default: tasks.db in the profile's security folder). One controller uses a file at a "
                          "time: give controllers that run at once in one profile different files.")
    sqlite_table = Unicode("ipcluster_tasks", config=True, help="The table of sqlite_file holding the task records.")
    sqlite_flush_interval = Float(0.1, config=True, help="Seconds between two writes of finished records to "
                                  "sqlite_file (one transaction each; never one per task). A controller killed "
                                  "without warning loses the records of about this long; a stopped one writes all.")
    ipc = Bool(True, config=True, help="Also listen on Unix domain sockets (in a private folder) that clients "
               "and engines on this host use instead of TCP: a message costs about a quarter less.")
    shm_dir = Unicode("/dev/shm", config=True, help="Memory-backed folder (tmpfs) in which the controller makes a "
                      "private folder where engines leave large results for clients on this host to map "
                      "instead of receiving them over a socket (see the data channel); '' turns that off.")
    replay_window = Float(60.0, config=True, help="Seconds a client's request may be old (by the date in its "
                          "signed header) when it reaches the controller; older ones are refused, and so is any "
                          "msg_id already seen within the window: a captured signed message cannot be sent again "
                          "(a replay). The controller remembers each request's id for up to 2 x (replay_window "
                          "+ clock_skew) seconds, about 100 bytes each (~15 MB at a sustained 1,000 requests/s). "
                          "Raise it if clients' clocks are far off, or if the controller may fall more than this "
                          "far behind its clients. 0: no replay check.")
    clock_skew = Float(15.0, config=True, help="Seconds a client's request may be dated ahead of the controller's "
                       "clock (clients on other hosts whose clocks run ahead); see replay_window.")
    max_client_frame_bytes = Integer(1 << 30, config=True, help="Largest frame, in bytes, the controller takes "
                                     "from a client (a frame is one part of a message: a large buffer, such as one "
                                     "numpy array, travels as a frame of its own). ZeroMQ disconnects a peer that "
                                     "announces a larger frame before reading it, so nobody who can reach the port "
                                     "can make the controller hold more than this at once per connection. Clients on "
                                     "this host send large buffers straight to engines (the data channel), but "
                                     "clients on other hosts push them through the controller: this caps the largest "
                                     "array they can send (the client refuses a larger one with an error). Default "
                                     "1 GiB; 0: no limit.")
    max_engine_frame_bytes = Integer(4 << 30, config=True, help="Largest frame, in bytes, the controller takes "
                                     "from an engine (a large result buffer travels as a frame of its own; see "
                                     "max_client_frame_bytes), and in engine output. Engines learn it when they "
                                     "register, and answer a task whose result has a larger buffer with an error "
                                     "instead of sending it. Default 4 GiB; 0: no limit.")
    reuse_files = Bool(False, config=True, help="Reuse the key and ports of existing connection files (to restart a controller in place).")
    ping = Float(0.0, config=True, help="Milliseconds between heartbeats, as ipyparallel's --ping gives it (sets hb_period; 0: hb_period as configured).")
    dask_timeout = Float(30.0, config=True, help="Seconds to wait for the dask scheduler that Client.become_dask() "
                         "starts in the controller to start, or to close.")

    @validate("db_class")
    def _known_db_class(self, proposal: Any) -> str:
        value = str(proposal["value"])
        name = DB_CLASSES.get(value.rsplit(".", 1)[-1].lower())
        if name is None:
            raise TraitError(f"unknown db_class {value!r}: choose 'memory', 'sqlite' or 'none' "
                             "(or ipyparallel's DictDB, SQLiteDB, NoDB; MongoDB is not supported)")
        return name

    @default("sqlite_file")
    def _sqlite_file_default(self) -> str:
        return str(self.security / "tasks.db")

    @observe("ping")
    def _ping_sets_hb_period(self, change: Any) -> None:
        if change["new"] > 0:
            self.hb_period = change["new"] / 1000.0

    aliases = {
        "profile": "ControllerApp.profile",
        "profile-dir": "ControllerApp.profile_dir",
        "cluster-id": "ControllerApp.cluster_id",
        "ip": "ControllerApp.ip",
        "location": "ControllerApp.location",
        "hb-period": "ControllerApp.hb_period",
        "ping": "ControllerApp.ping",
        "port": "ControllerApp.engine_port",
        "scheme": "ControllerApp.task_scheme",
        "log-level": "Application.log_level",
    }
    flags = {
        "reuse": ({"ControllerApp": {"reuse_files": True}}, "Reuse existing connection files."),
        "dictdb": ({"ControllerApp": {"db_class": "memory"}}, "Keep task records in memory (the default; ipyparallel's flag)."),
        "sqlitedb": (
            {"ControllerApp": {"db_class": "sqlite"}},
            "Also write finished task records to an SQLite file (ControllerApp.sqlite_file), read back when a "
            "controller starts on it again.",
        ),
        "nodb": (
            {"ControllerApp": {"db_class": "none"}},
            "Keep no results for get_result: each goes to the client that asked only (task records stay).",
        ),
    }

    @default("profile_dir")
    def _profile_dir_default(self) -> str:
        return str(default_profile_dir(self.profile))

    @property
    def security(self) -> Path:
        return security_dir(self.profile_dir)

    def connection_path(self, role: str) -> Path:
        return self.security / connection_file_name(role, self.cluster_id)  # type: ignore[arg-type]

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        argv = last_option_wins(argv)
        self.parse_command_line(argv)
        # the command line names the profile, then wins over its file
        load_profile_config(self, Path(self.profile_dir) / "ipcontroller_config.py", argv, "IPController",
                            CONTROLLER_RENAMES)
        ipp_config.apply(self)  # ipyparallel's task-database names (HubFactory, SQLiteDB, DictDB)
        if self.task_scheme not in SCHEMES:
            self.log.critical("unknown task scheme %r (choose from %s)", self.task_scheme, ", ".join(SCHEMES))
            self.exit(2)

    def start(self) -> None:
        try:
            asyncio.run(self.serve())
        except IPClusterError as e:
            self.log.critical("%s", e)
            self.exit(1)

    def _bind(self, sock: zmq.Socket, port: int) -> int:
        host = "*" if self.ip in ("*", "0.0.0.0", "") else self.ip
        try:
            if port:
                sock.bind(f"tcp://{host}:{port}")
                return port
            return sock.bind_to_random_port(f"tcp://{host}")
        except zmq.ZMQError as e:
            where = f"tcp://{host}:{port}" if port else f"a free port of tcp://{host}"
            raise IPClusterError(f"cannot listen on {where}: {e.strerror}") from None

    def _previous(self) -> dict[str, Any]:
        """Key and ports of the connection files being reused (empty unless ``reuse_files``)."""
        if not (self.reuse_files and self.connection_path("engine").exists()):
            return {}
        engine = json.loads(self.connection_path("engine").read_text())
        client = json.loads(self.connection_path("client").read_text())
        return {"key": engine["key"], "client_port": client["client_port"], "iopub_port": client["iopub_port"],
                "engine_port": engine["engine_port"], "iopub_engine_port": engine["iopub_port"],
                "hb_ping_port": engine["hb_ping_port"], "hb_pong_port": engine["hb_pong_port"],
                "ipc_dir": os.path.dirname((client.get("ipc") or {}).get("client_port", "")),
                "shm": client.get("shm", "")}

    def _ipc_dir(self, previous: str) -> str:
        """A private folder for the Unix sockets: the previous one when reusing files (engines and
        clients reconnect to the same paths), else a new one with a short random name."""
        if previous:
            os.makedirs(previous, mode=0o700, exist_ok=True)
            return previous
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        if not os.access(base, os.W_OK):
            base = tempfile.gettempdir()
        return tempfile.mkdtemp(prefix="ipcluster-", dir=base)  # mode 0700

    def _shm_dir(self, previous: str) -> str:
        """The private shared-memory folder (only with Unix sockets: the data channel needs them)."""
        if previous:
            os.makedirs(previous, mode=0o700, exist_ok=True)
            return previous
        return make_folder(self.shm_dir)

    def make_store(self) -> TaskStore:
        """The task store db_class names, with the configured bounds (raises IPClusterError,
        naming the file, when an SQLite file cannot be used)."""
        if self.db_class == "sqlite":
            from .db.sqlite import SQLiteStore  # only then: sqlite3 is not needed otherwise

            store = SQLiteStore(os.path.expanduser(self.sqlite_file), self.sqlite_table, max_records=self.max_records,
                                max_result_bytes=self.max_result_bytes, max_result_size=self.max_result_size,
                                log=self.log)
            self.log.info("task store %s (table %s): %d finished task(s) from before", store.path, store.table,
                          store.loaded)
            return store
        max_result_bytes = 0 if self.db_class == "none" else self.max_result_bytes
        return MemoryStore(self.max_records, max_result_bytes, self.max_result_size)

    async def serve(self) -> None:
        store = self.make_store()  # first: a store that cannot be used stops the controller before it listens
        write_behind = getattr(store, "write_behind", None)  # the SQLite store's batched writes
        writer = asyncio.create_task(write_behind(self.sqlite_flush_interval)) if write_behind else None
        ipc_dir = shm_dir = ""
        try:
            previous = self._previous()
            ipc_dir = self._ipc_dir(previous.get("ipc_dir", "")) if self.ipc else ""
            shm_dir = self._shm_dir(previous.get("shm", "")) if ipc_dir else ""
            await self._serve(previous, ipc_dir, shm_dir, store)
        finally:  # however it ends: the sockets' and shared memory's folders go with the controller
            if writer is not None:
                writer.cancel()
            store.close()  # writes what finished since the last write
            for folder in (ipc_dir, shm_dir):
                if folder:
                    shutil.rmtree(folder, ignore_errors=True)

    async def _serve(self, previous: dict[str, Any], ipc_dir: str, shm_dir: str, store: TaskStore) -> None:
        ctx: zmq.Context[zmq.Socket[Any]] = zmq.Context.instance()
        key = previous.get("key", "").encode() or new_key()
        session = Session(key, username="controller")
        kinds = {
            "client": zmq.ROUTER, "engine": zmq.ROUTER, "iopub_out": zmq.XPUB,
            "iopub_in": zmq.XSUB, "hb_ping": zmq.PUB, "hb_pong": zmq.ROUTER,
        }
        socks = {name: ctx.socket(kind) for name, kind in kinds.items()}
        for name in ("client", "engine", "iopub_out", "iopub_in"):
            socks[name].setsockopt(zmq.SNDHWM, 0)
            socks[name].setsockopt(zmq.RCVHWM, 0)
            socks[name].setsockopt(zmq.LINGER, 1000)
        socks["engine"].setsockopt(zmq.ROUTER_MANDATORY, 1)
        limits = {"client": self.max_client_frame_bytes, "engine": self.max_engine_frame_bytes,
                  "iopub_in": self.max_engine_frame_bytes, "iopub_out": SMALL_FRAME, "hb_pong": SMALL_FRAME}
        for name, limit in limits.items():  # sockets others send to: a bound on what they can make us hold
            socks[name].setsockopt(zmq.MAXMSGSIZE, limit if limit > 0 else -1)
        socks["iopub_out"].setsockopt(zmq.XPUB_VERBOSE, 1)
        ports = {
            "client_port": self._bind(socks["client"], previous.get("client_port") or self.client_port),
            "engine_port": self._bind(socks["engine"], previous.get("engine_port") or self.engine_port),
            "iopub_port": self._bind(socks["iopub_out"], previous.get("iopub_port") or self.iopub_port),
            "iopub_engine_port": self._bind(socks["iopub_in"], previous.get("iopub_engine_port") or self.iopub_engine_port),
            "hb_ping_port": self._bind(socks["hb_ping"], previous.get("hb_ping_port") or self.hb_ping_port),
            "hb_pong_port": self._bind(socks["hb_pong"], previous.get("hb_pong_port") or self.hb_pong_port),
        }
        ipc: dict[str, str] = {}
        if ipc_dir:
            for name, port in (("client", "client_port"), ("engine", "engine_port"), ("iopub_out", "iopub_port"),
                               ("iopub_in", "iopub_engine_port"), ("hb_ping", "hb_ping_port"),
                               ("hb_pong", "hb_pong_port")):
                ipc[port] = os.path.join(ipc_dir, name)
                socks[name].bind(f"ipc://{ipc[port]}")
        location = self.location or (socket.gethostname() if self.ip in ("*", "0.0.0.0", "") else self.ip)
        interface = f"tcp://{location}"
        common = {"key": key.decode(), "signature_scheme": "hmac-sha256", "interface": interface,
                  "location": location, "addresses": listen_addresses(self.ip, location),
                  "cluster_id": self.cluster_id, "pid": os.getpid(),
                  **({"shm": shm_dir} if shm_dir else {})}
        scheduler = SCHEMES[self.task_scheme](hwm=self.hwm, queue_time=self.queue_time)
        dask = DaskScheduler(self.ip, location, self.dask_timeout, self.log)
        router = Router(Hub(store, scheduler, self.task_kill_limit), session, socks, cluster_id=self.cluster_id,
                        hb_period=self.hb_period, hb_misses=self.hb_misses, client_timeout=self.client_timeout,
                        drop_orphaned_tasks=self.drop_orphaned_tasks, engine_timeout=self.engine_timeout,
                        interrupt_grace=self.interrupt_grace_period, dask=dask,
                        max_client_frame=self.max_client_frame_bytes, max_engine_frame=self.max_engine_frame_bytes,
                        replay=ReplayGuard(self.replay_window, self.clock_skew), log=self.log)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, router.stop)
        router.start()
        files = [
            write_private_json(self.connection_path("engine"), {
                **common, "engine_port": ports["engine_port"], "iopub_port": ports["iopub_engine_port"],
                "hb_ping_port": ports["hb_ping_port"], "hb_pong_port": ports["hb_pong_port"],
                **({"ipc": {"engine_port": ipc["engine_port"], "iopub_port": ipc["iopub_engine_port"],
                            "hb_ping_port": ipc["hb_ping_port"], "hb_pong_port": ipc["hb_pong_port"]}}
                   if ipc else {})}),
            write_private_json(self.connection_path("client"), {
                **common, "client_port": ports["client_port"], "iopub_port": ports["iopub_port"],
                **({"ipc": {"client_port": ipc["client_port"], "iopub_port": ipc["iopub_port"]}} if ipc else {})}),
        ]
        self.log.info("controller %s listening on %s (client port %i, engine port %i)",
                      self.cluster_id or "(default)", interface, ports["client_port"], ports["engine_port"])
        try:
            await router.stopped.wait()
        finally:
            router.stop()
            dask.stop()  # if become_dask started one (bounded by dask_timeout)
            for f in files:
                f.unlink(missing_ok=True)
            for s in socks.values():
                s.close(linger=200)
            self.log.info("controller stopped")


def listen_addresses(ip: str, location: str) -> list[str]:
    """Every address engines may use to reach us: ``location`` first, then, when listening on all
    interfaces, each address of this host (loopback last). Engines try them all at once and keep
    the first that answers (see ``ipcluster.engine.remote``), so a host that cannot route to one
    of them still finds another."""
    if ip not in ("*", "0.0.0.0", ""):
        return [ip] if ip == location else [location, ip]
    import psutil  # only here: it costs the controller's start 15 ms otherwise

    found: list[str] = []
    loopback: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET:
                (loopback if a.address.startswith("127.") else found).append(a.address)
    return list(dict.fromkeys([location, *found, *loopback]))


def main(argv: list[str] | None = None) -> None:
    app = ControllerApp.instance()
    app.initialize(argv)
    app.start()
    sys.exit(0)
