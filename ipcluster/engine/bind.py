"""``bind_kernel()``: serve an engine's namespace to Jupyter frontends as well.

Called on an engine (``view.apply(bind_kernel)``), it starts a real IPython kernel (ipykernel's
``IPKernelApp``) inside the engine process, on its own connection file, sharing the engine's
user namespace. ``jupyter console --existing kernel-<pid>.json`` (or a
``jupyter_client.BlockingKernelClient``) then inspects and changes the very variables the
engine's tasks use, which is how ipyparallel users debug a remote computation.

How it fits an engine that is not an ipykernel:

- Sockets, the heartbeat and ipykernel's I/O threads are created by ``IPKernelApp.initialize``;
  the kernel's message handlers are registered on the engine's own asyncio loop (the one loop of
  the main thread), from a callback scheduled while the ``apply`` that called us returns. A
  frontend's request therefore runs between engine tasks, never beside one, as in ipyparallel.
- The kernel's shell is a second ``InteractiveShell`` over the same ``__main__`` module. Only
  while it executes a frontend's cell are ``sys.stdout``/``sys.stderr`` the kernel's streams and
  is it the IPython singleton (so ``display()`` goes to the frontend); otherwise the engine's
  output capture and shell stay in place.
- What ipykernel would change process-wide and an engine owns is left alone: SIGINT handling
  (the engine's interrupt machinery), ``sys.excepthook``, ``sys.stdout``, ``sys.displayhook``.
- ``%connect_info`` becomes available in the engine's shell (``view.execute("%connect_info")``),
  printing the connection information a frontend needs.

The connection file goes to the engine's profile ``security`` folder when it is known (next to
the controller's files), else Jupyter's runtime folder.
"""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Any

__all__ = ["bind_kernel", "connection_file"]

_bound: dict[str, Any] = {}


def _engine() -> Any:
    """The engine's app (``EngineApp``); raises outside an engine."""
    app_module = sys.modules.get("ipcluster.engine.app")
    if app_module is not None and app_module.EngineApp.initialized():
        app = app_module.EngineApp.instance()
        if getattr(app, "kernel", None) is not None:
            return app
    raise RuntimeError("bind_kernel() works only in code running on an ipcluster engine")


def connection_file() -> str | None:
    """The bound kernel's connection file on this engine, or None before :func:`bind_kernel`."""
    app = _bound.get("app")
    return None if app is None else str(app.abs_connection_file)


def _security_dir(engine_app: Any) -> str | None:
    path = getattr(engine_app, "connection_file", "") or ""
    if path:
        return os.path.dirname(os.path.abspath(path))
    profile_dir = getattr(engine_app, "profile_dir", "") or ""
    return os.path.join(profile_dir, "security") if profile_dir else None


def bind_kernel(**kwargs: Any) -> None:
    """Bind this engine's namespace to a full IPython kernel, for Jupyter frontends.

    Returns immediately; the kernel answers once the current task has returned. Calling it
    again does nothing. Keyword arguments set traits of ipykernel's ``IPKernelApp``
    (``ip``, ``transport``, ``connection_file``, ...).
    """
    if "app" in _bound:
        return
    engine_app = _engine()
    engine_kernel = engine_app.kernel  # the engine's request loop: its loop, namespace and shell
    loop = engine_kernel._loop  # noqa: SLF001
    engine_shell = engine_kernel.cells.get_shell()

    from IPython.core.interactiveshell import InteractiveShell
    from ipykernel.iostream import OutStream
    from ipykernel.kernelapp import IPKernelApp

    class BoundKernelApp(IPKernelApp):  # type: ignore[misc]
        """IPKernelApp that leaves what the engine owns alone (see the module docstring)."""

        def init_signal(self) -> None:
            pass

        def init_crash_handler(self) -> None:
            pass

        def init_io(self) -> None:
            # sys.stdout and sys.displayhook stay the engine's; init_kernel still sets one
            # attribute on the display hook ipykernel would have installed
            self.displayhook = types.SimpleNamespace()

    folder = _security_dir(engine_app)
    if "connection_file" not in kwargs and folder and os.path.isdir(folder):
        kwargs["connection_file"] = os.path.join(folder, f"kernel-{os.getpid()}.json")
    kwargs.setdefault("ip", "127.0.0.1")
    # a JPY_PARENT_PID inherited from a notebook that started the cluster must not make the
    # engine exit with that notebook's server: the engine has its own lifetime rules
    kwargs.setdefault("parent_handle", 0)
    kwargs.setdefault("interrupt", 0)
    app = BoundKernelApp(**kwargs)
    # the shells are singletons: make room for the kernel's, then give the engine its own back
    saved = InteractiveShell._instance
    InteractiveShell._instance = None
    try:
        app.initialize([])
    finally:
        InteractiveShell._instance = saved
    kernel = app.kernel
    kernel.user_module = engine_kernel.user_module
    kernel.user_ns = engine_kernel.user_ns
    # a new shell installs its module as sys.modules["__main__"]: the engine's must stay there,
    # since what engines pickle by reference to __main__ is looked up in it
    sys.modules["__main__"] = engine_kernel.user_module
    shell = app.shell
    assert shell is not None  # IPKernelApp.initialize made it
    streams = {
        "stdout": OutStream(app.session, app.iopub_thread, "stdout", watchfd=False),
        "stderr": OutStream(app.session, app.iopub_thread, "stderr", watchfd=False),
    }
    swapped: list[Any] = []
    ns = engine_kernel.user_ns
    # both shells put their get_ipython in the shared namespace, and IPython turns "%magic" into
    # get_ipython().run_line_magic(...): the engine's shell keeps it between frontend cells
    ns["get_ipython"] = engine_shell.get_ipython

    def enter() -> None:  # a frontend's cell starts: its output and display() go to the frontend
        swapped[:] = [sys.stdout, sys.stderr, InteractiveShell._instance]
        for stream in streams.values():  # the kernel set the request as parent on sys.stdout,
            stream.set_parent(shell.parent_header)  # which was the engine's until now
        sys.stdout, sys.stderr = streams["stdout"], streams["stderr"]
        InteractiveShell._instance = shell
        ns["get_ipython"] = shell.get_ipython

    def leave() -> None:
        if not swapped:
            return
        for s in streams.values():
            s.flush()
        sys.stdout, sys.stderr, InteractiveShell._instance = swapped
        ns["get_ipython"] = engine_shell.get_ipython
        swapped.clear()

    shell.events.register("pre_execute", enter)
    shell.events.register("post_execute", leave)
    _bound["app"] = app
    for sh in (engine_shell, shell):  # ipykernel's own asks IPKernelApp.instance(): not ours
        sh.register_magic_function(_connect_info, "line", "connect_info")
    loop.call_soon(kernel.start)  # on the engine's loop, once this task has returned
    engine_app.log.info("bound a Jupyter kernel to engine %s: %s", engine_kernel.engine_id, app.abs_connection_file)


def _connect_info(line: str = "") -> None:
    """Print the bound kernel's connection information (``%connect_info``)."""
    app = _bound.get("app")
    if app is None:
        print("No kernel is bound to this engine: call ipcluster.bind_kernel() on it first.")
        return
    with open(app.abs_connection_file) as f:
        info = json.load(f)
    print(json.dumps(info, indent=2))
    name = os.path.basename(app.abs_connection_file)
    print(
        "Paste the above JSON into a file, and connect with:\n"
        "    $> jupyter <app> --existing <file>\n"
        "or, if you are local, you can connect with just:\n"
        f"    $> jupyter <app> --existing {name}\n"
        "or even just:\n"
        "    $> jupyter <app> --existing\n"
        "if this is the most recent Jupyter kernel you have started."
    )
