"""The JSON shapes the service answers with, for validation and the OpenAPI documentation.

The prediction's fields come from :data:`face_health.schema.TARGETS`, so a new target shows
up in the API and its documentation without an edit here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from face_health import schema


class TargetValue(BaseModel):
    """One predicted target: a value in its unit, or a probability for a yes/no target."""

    value: float | None = Field(description="null when the model could not predict it")
    unit: str = Field(description="unit of the value; 'probability' for yes/no targets")


class QualityControl(BaseModel):
    """The scan's quality control: ``ok``, ``warning`` (scored, but look) or ``failed``."""

    status: str
    reason: str = ""


class OutOfDistribution(BaseModel):
    """How far the scan's features are from the training cohort (``modelling.ood``)."""

    score: float | None = Field(
        description="largest Mahalanobis distance / threshold over the feature spaces; 1.0 is "
        "the 99th percentile of the validation subjects (null when not measured)"
    )
    flag: bool | None = Field(
        description="true when the score is above 1 or a space could not be measured: the "
        "predictions are extrapolations (the QC then says 'warning')"
    )
    spaces: dict[str, float | None] = Field(
        default_factory=dict,
        description="Mahalanobis distance per feature space: global (embedding; global_f0, "
        "global_f1, ... with a cross-fitted embedding) and local (facial-omics PCA)",
    )


def _prediction_model() -> type[BaseModel]:
    fields: dict[str, Any] = {"subject_id": (str, Field(description="as sent, or 'scan'"))}
    for target in schema.TARGETS:
        unit = target.unit if target.kind == "regression" else "probability"
        fields[target.name] = (TargetValue, Field(description=f"{target.description} ({unit})"))
    fields["ood"] = (OutOfDistribution, ...)
    fields["qc"] = (QualityControl, ...)
    fields["model_run_id"] = (str | None, Field(description="MLflow run that trained the model"))
    fields["request_id"] = (str | None, Field(default=None, description="for support requests"))
    return create_model(  # type: ignore[call-overload,no-any-return]
        "Prediction",
        __doc__="Every target of one scan with its unit, the out-of-distribution score, the "
        "QC, and the model's run id.",
        __config__=ConfigDict(extra="allow"),
        **fields,
    )


Prediction = _prediction_model()


class ErrorResponse(BaseModel):
    """Every error: a message for people, a short code for programs, the status, and the
    request id to quote when asking for help."""

    detail: str
    error: str
    status: int
    request_id: str | None = None
    qc: QualityControl | None = Field(default=None, description="only for a failed scan (422)")
    model_run_id: str | None = Field(default=None, description="only for a failed scan (422)")


class Health(BaseModel):
    """The service is up and has a model loaded."""

    status: str = "ok"


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": description}
    for code, description in {
        400: "malformed upload: bad form, unreadable zip, unsafe path in a zip or a file",
        401: "missing or wrong bearer token",
        413: "upload, unpacked zip, compression ratio, entry count or texture over the limit",
        415: "content is no supported mesh format, or a zip entry is not mesh/material/image",
        422: "the scan failed quality control (see `qc.reason`)",
        503: "too many predictions in flight; retry later",
        504: "the prediction took longer than the time limit",
    }.items()
}

UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "One scan: a mesh file (OBJ, PLY, STL, OFF, GLB, glTF) or a zip of OBJ + MTL + texture "
        "image, as the single file of a multipart form or as the raw request body. The format "
        "is read from the content, not the file name."
    ),
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "scan": {"type": "string", "format": "binary"},
                    "subject_id": {"type": "string", "maxLength": 64},
                },
                "required": ["scan"],
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
