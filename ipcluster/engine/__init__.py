"""The engine: one process that registers with a controller and runs tasks.

``python -m ipcluster.engine --file=ipcontroller-engine.json`` (or the ``ipengine`` command);
see :mod:`.app`. Importing this package imports nothing else: the client, the controller and
IPython stay out of an engine until its user code asks for them.
"""
