"""Declarative map layers (registry, styles, folium helpers). Imports gis only."""
