"""The demo: ``infertrail demo`` (run), the traffic simulators and the demo's outcome feed."""

__all__: list[str] = []
