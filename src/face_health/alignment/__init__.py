"""Stage 1c, alignment: each face to the template by the similarity transform of its
landmarks, and the face crop (``similarity``).
"""
