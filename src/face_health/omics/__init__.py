"""Stage 2b, facial omics: the 20 regions (``regions``), per-region morphology (``curvature``,
``radiomics``) and texture (``texture``) radiomics, and the standardise + PCA model (``pca``).
"""
