"""Data errors: what a per-subject stage raises when a subject's data cannot go on.

The rule
--------
A :class:`DataError` says "this subject's data is unusable here, and why": an unreadable
scan, no face found, too few landmarks, a face model that cannot follow the scan, a face
region that holds none of the mesh. :func:`face_health.parallel.map_subjects` turns a
``DataError`` (and only a ``DataError``) into a failed :class:`~face_health.parallel.Outcome`,
which the node writes as a ``failed`` QC row with the message as its reason, and the other
subjects go on. Anything else (a ``KeyError``, a ``TypeError``, a ``ValueError`` from a
bad setting or a broken contract) is a bug: it fails the node, naming the subject, with its
traceback, instead of turning up stages later as a cohort of "failed" subjects.

So a stage module raises a ``DataError`` subclass where the *data* is at fault, with a
message a person can act on; configuration errors (an unknown setting, a method name that
does not exist) stay ``ValueError``. The subclasses are also ``ValueError`` so that callers
that caught ``ValueError`` before (the command line, tests) keep working.

:func:`face_health.parallel.check_failures` then fails a stage when too many subjects failed:
one bad scan is a QC row, a third of the cohort failing is a problem to look at.
"""

from __future__ import annotations


class DataError(Exception):
    """A subject's data cannot be used by a stage; the message says why in plain words.

    Raised for a failed QC row, never for a bug or a bad setting (see the module docstring).
    """


class UnreadableScanError(DataError, ValueError):
    """A scan file cannot be used: unsupported format, empty, truncated, not a mesh, zero
    faces, no extent (``face_health.ingest``; ``ingest.checks.ScanError`` is this class)."""


class NoFaceFoundError(DataError, ValueError):
    """The landmark detector's views of a scan do not show a face it can place
    (``landmarks.detector``)."""


class TooFewLandmarksError(DataError, ValueError):
    """Too few usable landmarks for a step: a frontal frame, the start of the model fit, or
    the alignment to the template (``alignment.similarity``, ``landmarks.model_fit``)."""


class ModelFitError(DataError, ValueError):
    """The face model cannot follow the scan: it lost the surface, its residual or identity
    is too far off, or the scan covers too little of the face (``landmarks.model_fit``,
    ``landmarks.locate``)."""


class RegionError(DataError, ValueError):
    """A face region holds none of the scan's surface: the alignment's face box crops away
    the whole mesh (``alignment.similarity.crop_to_box``)."""


class LeakageError(RuntimeError):
    """Something fitted on the training split saw a validation or test subject.

    A bug or a broken contract of the pipeline (a node selected the wrong rows, a split table
    lists a subject twice), never a :class:`DataError`: no subject's data is at fault, so it is
    not turned into a QC row; it stops the node. Raised explicitly rather than with ``assert``
    so that the guard also holds under ``python -O``. The message names the split and the
    first few subjects concerned.
    """
