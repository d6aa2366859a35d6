"""The controller: one process that registers engines, routes tasks and records them.

``app`` (the process), ``router`` (sockets to state), ``hub`` (registry state), ``heartbeat``,
``schedulers/`` (load-balancing schemes) and ``db/`` (task record stores).
"""
