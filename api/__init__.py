"""gridgov HTTP API (FastAPI). Imports ``layers`` and ``gis``; nothing imports ``api``."""
