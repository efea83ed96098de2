"""Stage 1d, views: cameras and the directional renders the ResNet-50 sees (``cameras``,
``rendering``); the rendering entry sets up the headless GL context explicitly.
"""
