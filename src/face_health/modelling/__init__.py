"""Stage 3, modelling: per-group MLPs and their baselines on global + local features
(``models``).
"""
