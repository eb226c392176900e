"""The HTTP front of ``/v1/*`` and the routes of the protocol: auth, body limits, answers."""

from .routes import routes

__all__ = ["routes"]
