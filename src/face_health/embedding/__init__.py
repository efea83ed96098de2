"""Stage 2a, global features: the ResNet-50 (timm + Lightning) on the views (``model``) and
its data module of rendered views (``data``).
"""
