"""The planner workbench (issue 7): draft plans of grid boundaries, edits with undo/redo and
optimistic locking, checks, automatic partition along roads, diff, publish, files.

- ``plans``: create a plan (copy an area subtree) and edit it (reshape, carve, split, merge,
  move buildings or road blocks, snap to roads, lock).
- ``store``: plan areas in the database, versions, the operation log, undo/redo.
- ``geometry``: the edits as pure geometry; ``blocks``: road blocks and building units.
- ``checks``: coverage, nesting, contiguity, holes, slivers, balance, compactness, roads.
- ``autopartition``: cut communities into grids near a target size.
- ``publish``: diff against the boundaries in force; publish a new boundary version.
- ``files``: export/import GeoPackage, GeoJSON, Shapefile.

See docs/planner.md.
"""
