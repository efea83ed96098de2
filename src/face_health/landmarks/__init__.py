"""Landmark detection on 3D scans: multi-view heatmaps and consensus back to 3D."""
