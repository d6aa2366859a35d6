"""The wire protocol shared by the controller, the engines and the client (sockets excluded)."""
