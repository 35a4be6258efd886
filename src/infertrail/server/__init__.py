"""The demo service: the served models behind FastAPI, instrumented like any user's app."""

from infertrail.server.app import DemoService, build_services, create_app

__all__ = ["DemoService", "build_services", "create_app"]
