"""Import and export of spatial data files (see docs/import-export.md).

- ``import_areas``: GeoJSON, GeoPackage, Shapefile (and gridgov's own CSV) → versioned areas,
  reprojected to WGS84 from any EPSG CRS (CGCS2000 and its Gauss-Krüger zones included), with
  one report of every problem in the file when it is rejected.
- ``export_layer``: any layer of the allow-list ``EXPORT_LAYERS`` → GeoJSON, GeoPackage,
  Shapefile or CSV, written with pyogrio.
"""

from gis.io.export import EXPORT_LAYERS, ExportLayer, export_layer
from gis.io.formats import driver_for
from gis.io.importer import import_areas

__all__ = ["EXPORT_LAYERS", "ExportLayer", "driver_for", "export_layer", "import_areas"]
