"""gridgov spatial core: database, models, areas, lookup, import/export, demo and synthetic data.

This package never imports a web framework; the API (``api``) and map layers (``layers``) build
on it, never the other way round.
"""

__version__ = "0.1.0"
