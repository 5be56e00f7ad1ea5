"""The co-composer: a web page and JSON API to compose with the model (`musenet serve`)."""

from .app import create_app

__all__ = ["create_app"]
