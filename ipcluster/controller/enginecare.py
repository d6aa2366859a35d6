"""What the controller does to engines beyond routing their messages: letting a restarted engine
reclaim its id, and stopping a task that must not go on running.

- **Reclaimed ids.** A Cluster restarts a dead engine with ``--id=N``. Its registration can arrive
  before the controller has noticed the death (heartbeats take ``hb_period * hb_misses``), so the
  request is *held* until the old engine is declared gone, and refused when the holder turns
  out to be alive.
- **Stopping a running task** (aborted with ``running=True``, or past its ``timeout``): SIGINT
  through the engine's control socket now; if the task still runs ``interrupt_grace`` seconds
  later, SIGKILL (a Cluster supervising the engine starts a new one under its id); if even that
  does not stop it, the engine is declared gone.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

from ..error import error_content
from ..protocol import messages
from .decisions import EngineIdTaken

if TYPE_CHECKING:
    from .router import Router


class EngineCare:
    def __init__(self, router: "Router", interrupt_grace: float) -> None:
        self.router = router
        self.interrupt_grace = interrupt_grace  # seconds from SIGINT to SIGKILL for a task told to stop
        #: registrations waiting for their requested id: id -> (uuid, content, header, deadline)
        self.held: dict[int, tuple[bytes, Any, dict[str, Any], float]] = {}

    # -- registration ------------------------------------------------------------------------
    def register(self, euuid: bytes, content: messages.RegistrationRequest, header: dict[str, Any]) -> None:
        router = self.router
        requested = content.get("id")
        try:
            info = router.hub.register_engine(euuid, str(content.get("hostname", "")), int(content.get("pid", 0)),
                                              str(content.get("data_url") or ""),
                                              requested_id=requested if isinstance(requested, int) else None)
        except EngineIdTaken as e:
            # a restarted engine reclaims its id before its dead predecessor missed enough heartbeats
            assert isinstance(requested, int)
            wait = router.hb_period * (router.heart.misses + 2)
            router.log.info("engine %i's replacement waits up to %g s for the old one's death", requested, wait)
            old = self.held.pop(requested, None)
            if old is not None:
                router.reply(router.engine, old[0], "registration_reply", error_content(e), old[2])
            self.held[requested] = (euuid, content, header, time.monotonic() + wait)
            return
        except ValueError as e:
            router.reply(router.engine, euuid, "registration_reply", error_content(e), header)
            return
        router.heart.add(euuid)
        router.reply(router.engine, euuid, "registration_reply",
                     {"status": "ok", "id": info.id, "hb_period": router.hb_period,
                      "max_frame_bytes": router.max_engine_frame}, header)
        router.log.info("engine %i registered (pid %s on %s)", info.id, info.pid, info.hostname)
        router.publish("registration_notification", info.details())
        router.carry_out(router.hub.drain_unassigned())

    def release(self, eid: int) -> None:
        """Engine ``eid`` is gone: a registration held for its id goes ahead."""
        held = self.held.pop(eid, None)
        if held is not None:
            self.register(held[0], held[1], held[2])

    def refuse_held(self, now: float) -> None:
        """Refuse the held registrations whose deadline passed: the id's holder is still alive."""
        for eid, (euuid, _, header, deadline) in list(self.held.items()):
            if deadline < now:
                del self.held[eid]
                err = EngineIdTaken(f"engine id {eid} is held by a registered engine that is still alive")
                self.router.reply(self.router.engine, euuid, "registration_reply", error_content(err), header)

    # -- stopping a running task -------------------------------------------------------------
    def signal(self, euuid: bytes, signum: int) -> bool:
        ctl = euuid + messages.CONTROL_SUFFIX
        router = self.router
        return router.to_engine(router.session.serialize("signal_request", {"signum": signum}, idents=[ctl])[1])

    def interrupt(self, msg_id: str, euuid: bytes, why: str) -> None:
        """Stop a running task (answered already): SIGINT now; if it still runs ``interrupt_grace`` s
        later, kill the engine (a Cluster supervising it starts a new one under its id)."""
        self.signal(euuid, signal.SIGINT)
        self.router.call_later(self.interrupt_grace, self.escalate, msg_id, euuid, why)

    def escalate(self, msg_id: str, euuid: bytes, why: str, killed: bool = False) -> None:
        router = self.router
        if (info := router.hub.by_uuid.get(euuid)) is None or (msg_id not in info.tasks and msg_id not in info.queue):
            return  # the interrupt worked, or the engine is gone (heartbeats tell, after the Cluster saw it)
        if killed:  # the SIGKILL did not reach it (its control thread is stuck too): stop counting on it
            router.engine_gone(euuid, f"still running {why} task {msg_id} after SIGKILL")
            router.to_engine(router.session.serialize("shutdown_request", {}, idents=[euuid])[1])
            return
        router.log.warning("engine %i still runs %s task %s %g s after SIGINT: killing it (SIGKILL)",
                           info.id, why, msg_id, self.interrupt_grace)
        self.signal(euuid, signal.SIGKILL)
        router.call_later(router.hb_period * (router.heart.misses + 2), self.escalate, msg_id, euuid, why, True)
