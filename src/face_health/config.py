"""Typed settings: one frozen dataclass per parameters section, built once per node.

The YAML in ``conf/base`` (overridden per environment) is the only place a parameter's default
lives. :meth:`Section.from_parameters` builds a section from its mapping and refuses what the
code would otherwise ignore: an unknown key (a typo), a missing key, a value of the wrong kind;
the message names the key and the file. The Kedro nodes and the scorer of new scans build the
same objects from the same mappings (the scorer keeps the training run's), so both run the
method with the same settings.

Nested algorithm settings (``landmarks.model_fit`` -> :class:`~face_health.landmarks.model_fit.
FitSettings`, ``landmarks.views`` -> ``TrainingViewSettings``, ``cohort.synthetic.settings`` ->
``CohortSettings``) are dataclasses of their modules whose defaults are the tuned constants of
an algorithm (documented there with what they were chosen on); the YAML overrides single keys
and unknown keys are refused the same way.

Examples
--------
>>> IngestSettings.from_parameters({"units": "mm"})  # doctest: +SKIP
SettingsError: parameters_data_engineering.yml, section ingest: missing keys ['min_component_...
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="Section")


class SettingsError(ValueError):
    """A parameters section that does not match its settings class (a configuration error,
    never a data error: the run stops with this message)."""


@dataclasses.dataclass(frozen=True)
class Section:
    """Base of the parameters sections. Subclasses set ``SECTION`` and ``FILE``."""

    SECTION: ClassVar[str] = ""
    FILE: ClassVar[str] = ""

    @classmethod
    def from_parameters(cls: type[S], values: Mapping[str, Any] | None) -> S:
        """The section from its parameters mapping (what ``params:<section>`` gives a node)."""
        where = f"{cls.FILE}, section {cls.SECTION}" if cls.FILE else cls.SECTION or cls.__name__
        return _build(cls, values, where)

    def to_parameters(self) -> dict[str, Any]:
        """The mapping this section was built from (tuples as lists), for YAML or a model."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_dataclass(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """Any dataclass from a mapping with the same checks (unknown keys refused, lists to
    tuples, numbers checked); fields with defaults may be left out."""
    return _build(cls, values, where)


def _build(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise SettingsError(f"{where}: expected a mapping of settings, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {unknown} "
            f"(a typo?); known keys: {sorted(known)}"
        )
    required = [
        name
        for name, f in known.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = sorted(set(required) - set(values))
    if missing:
        raise SettingsError(f"{where}: missing key{'s' if len(missing) > 1 else ''} {missing}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _convert(value, hints[name], f"{where}: {name}") for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{where}: {exc}") from exc


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except SettingsError as exc:
                errors.append(str(exc))
        raise SettingsError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not valid")
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            raise SettingsError(f"{where}: expected {len(args)} values, got {list(value)}")
        item = args[0] if args else Any
        return tuple(
            _convert(v, args[i] if args and args[-1] is not Ellipsis else item, where)
            for i, v in enumerate(value)
        )
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected text, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in args:
            raise SettingsError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    return value


# --- the sections ------------------------------------------------------------------------

DE = "conf/*/parameters_data_engineering.yml"
FE = "conf/*/parameters_feature.yml"
MO = "conf/*/parameters_modelling.yml"
IN = "conf/*/parameters_inference.yml"
FT = "conf/*/parameters_final_test.yml"


@dataclasses.dataclass(frozen=True)
class SyntheticCohortSettings:
    """``cohort.synthetic``: the simulated default cohort."""

    n: int
    seed: int
    n_jobs: int
    settings: dict[str, Any]  # synthetic.CohortSettings (checked by its from_dict)


@dataclasses.dataclass(frozen=True)
class CohortSourceSettings(Section):
    """``cohort``: where the raw cohort comes from."""

    SECTION: ClassVar[str] = "cohort"
    FILE: ClassVar[str] = DE

    source: typing.Literal["synthetic", "folder"]
    path: str
    clinical: str
    synthetic: SyntheticCohortSettings


@dataclasses.dataclass(frozen=True)
class IngestSettings(Section):
    """``ingest``: reading and cleaning each scan (one object for the node and the scorer)."""

    SECTION: ClassVar[str] = "ingest"
    FILE: ClassVar[str] = DE

    units: typing.Literal["auto", "mm", "cm", "m"]
    vertex_budget: int
    min_component_fraction: float
    require_colour: bool
    n_jobs: int
    #: Cost limits of one scan, the same for the CLI, the pipeline and the service
    #: (``face_health.ingest.limits.ScanLimits``): refused above ``max_file_mb`` (any file of
    #: the scan) or ``max_texture_pixels`` (read from the image header, before decoding);
    #: decimated to ``max_vertices`` before cleaning; textures downsampled to
    #: ``texture_working_size`` pixels on the longest side as they are loaded.
    max_file_mb: float
    max_texture_pixels: int
    texture_working_size: int
    max_vertices: int
    #: Surface noise (median angle between neighbouring triangles' normals, degrees) above
    #: which a scan is a warning, and above which it fails (``face_health.ingest.surface``).
    warn_surface_noise_deg: float
    max_surface_noise_deg: float

    def __post_init__(self) -> None:
        if not 0 < self.warn_surface_noise_deg <= self.max_surface_noise_deg < 180:
            raise ValueError(
                "need 0 < warn_surface_noise_deg <= max_surface_noise_deg < 180 (degrees), got "
                f"{self.warn_surface_noise_deg} and {self.max_surface_noise_deg}"
            )
        for name in ("max_file_mb", "max_texture_pixels", "texture_working_size", "max_vertices"):
            value = getattr(self, name)
            if not (value > 0 and value != float("inf")):
                raise ValueError(f"{name} must be a positive, finite number, got {value!r}")
        if self.max_vertices < self.vertex_budget:
            raise ValueError(
                f"max_vertices ({self.max_vertices}) must be at least vertex_budget "
                f"({self.vertex_budget}): it decimates before cleaning, vertex_budget after"
            )

    def limits(self) -> Any:
        """The cost limits as :class:`face_health.ingest.limits.ScanLimits`."""
        from face_health.ingest.limits import ScanLimits

        return ScanLimits(
            max_file_mb=self.max_file_mb,
            max_texture_pixels=self.max_texture_pixels,
            texture_working_size=self.texture_working_size,
            max_vertices=self.max_vertices,
        )

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`face_health.ingest.scan.ingest_scan`."""
        return {
            "units": self.units,
            "vertex_budget": self.vertex_budget,
            "min_component_fraction": self.min_component_fraction,
            "require_colour": self.require_colour,
            "limits": self.limits(),
            "warn_surface_noise_deg": self.warn_surface_noise_deg,
            "max_surface_noise_deg": self.max_surface_noise_deg,
        }


@dataclasses.dataclass(frozen=True)
class QcSettings(Section):
    """``qc``: when a per-subject stage stops the run instead of writing QC rows."""

    SECTION: ClassVar[str] = "qc"
    FILE: ClassVar[str] = DE

    max_failed_fraction: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise SettingsError(
                f"{self.FILE}, section qc: max_failed_fraction must lie in [0, 1], "
                f"got {self.max_failed_fraction}"
            )


@dataclasses.dataclass(frozen=True)
class SplitSettings(Section):
    """``splits``: the subject-level train / validation / test split."""

    SECTION: ClassVar[str] = "splits"
    FILE: ClassVar[str] = DE

    fractions: tuple[float, float, float]
    seed: int
    stratify_by: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ContactSheetSettings(Section):
    """``contact_sheet``: the cohort's picture."""

    SECTION: ClassVar[str] = "contact_sheet"
    FILE: ClassVar[str] = DE

    n_subjects: int
    columns: int
    image_size: int


#: Lightning strategies that a Kedro node can start (``trainer.strategy``). ``auto`` is one
#: device. ``ddp_spawn`` starts fresh interpreters and pickles the trainer, module and data to
#: them (all must pickle; fine when CUDA is already initialised, so the one for GPUs).
#: ``ddp_fork`` (alias ``ddp_notebook``) forks the node's process: nothing is pickled, but
#: CUDA must not be initialised yet in it (CPUs). Lightning's ``ddp`` (and ``fsdp``,
#: ``deepspeed``) start the other processes by running the command line again: inside
#: ``kedro run`` that is the whole pipeline once more per process, so they are refused.
NODE_STRATEGIES = ("auto", "ddp_spawn", "ddp_fork", "ddp_notebook")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
TRAINER_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def check_trainer_options(
    options: Mapping[str, Any],
    where: str,
    *,
    required: tuple[str, ...] = (),
    refused: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`SettingsError` (naming ``where``) unless ``options``, keyword arguments
    of ``lightning.Trainer``, can run inside a Kedro node: ``accelerator`` one of
    :data:`ACCELERATORS`; ``devices`` a positive whole number, a list of device indices or
    ``auto``; ``strategy`` one of :data:`NODE_STRATEGIES` (``auto`` on one device only:
    Lightning's ``auto`` on several is ``ddp``); ``precision`` one of
    :data:`TRAINER_PRECISIONS`. ``required`` keys must be present; ``refused`` maps keys that
    must not be to the reason."""
    for key, reason in (refused or {}).items():
        if key in options:
            raise SettingsError(f"{where}: {key} is not a trainer option here: {reason}")
    missing = [key for key in required if key not in options]
    if missing:
        raise SettingsError(f"{where}: missing key{'s' if len(missing) > 1 else ''} {missing}")
    accelerator = options.get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        raise SettingsError(
            f"{where}: accelerator must be one of {list(ACCELERATORS)}, got {accelerator!r}"
        )
    devices = options.get("devices", "auto")
    if isinstance(devices, (list, tuple)):
        if (
            not devices
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in devices)
            or len(set(devices)) != len(devices)
        ):
            raise SettingsError(
                f"{where}: devices as a list must name distinct device indices (0, 1, ...), "
                f"got {list(devices)}"
            )
        if accelerator == "cpu":
            raise SettingsError(
                f"{where}: on the CPU devices is a number of processes, not a list "
                f"(got {list(devices)})"
            )
        count: int | None = len(devices)
    elif devices == "auto":
        count = None  # every GPU there is, or one CPU process
    elif isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise SettingsError(
            f"{where}: devices must be a positive whole number, a list of device indices or "
            f"'auto', got {devices!r}"
        )
    else:
        count = devices
    strategy = options.get("strategy", "auto")
    if strategy not in NODE_STRATEGIES:
        raise SettingsError(
            f"{where}: strategy {strategy!r} cannot run inside a Kedro node; use one of "
            f"{list(NODE_STRATEGIES)}. Lightning's ddp (like fsdp and deepspeed) starts the "
            "other processes by running the command line again (`kedro run ...`: the whole "
            "pipeline once more per process); ddp_spawn starts fresh processes and pickles "
            "the data to them (GPUs), ddp_fork (ddp_notebook) forks this one (CPUs, or GPUs "
            "before CUDA is initialised)"
        )
    if strategy == "auto" and count != 1:
        raise SettingsError(
            f"{where}: strategy 'auto' with devices {devices!r} would be Lightning's ddp on "
            "several devices, which a Kedro node cannot start (it reruns the command line); "
            "set devices: 1, or strategy: ddp_spawn or ddp_fork"
        )
    precision = options.get("precision", "32-true")
    if precision not in TRAINER_PRECISIONS:
        raise SettingsError(
            f"{where}: precision must be one of {list(TRAINER_PRECISIONS)}, got {precision!r}"
        )


#: The keys of ``landmarks.fit.trainer`` and ``embedding.trainer`` that the YAML must set.
DISTRIBUTED_KEYS = ("accelerator", "devices", "strategy")


@dataclasses.dataclass(frozen=True)
class LandmarkTrainingSettings:
    """``landmarks.fit``: the Lightning fit of the landmark network. ``trainer`` is keyword
    arguments of ``lightning.Trainer``: ``accelerator``, ``devices``, ``strategy`` and
    ``precision`` are required and checked (:func:`check_trainer_options`), others pass."""

    module: dict[str, Any]
    trainer: dict[str, Any]
    patience: int
    data: dict[str, Any]
    init_weights: str | None

    def __post_init__(self) -> None:
        check_trainer_options(
            self.trainer,
            f"{DE}, section landmarks: fit: trainer",
            required=(*DISTRIBUTED_KEYS, "precision"),
            refused={"max_epochs": "set fit.module.max_epochs (the cosine schedule spans it)"},
        )


@dataclasses.dataclass(frozen=True)
class LandmarkSettings(Section):
    """``landmarks``: the detector, the model fit and (``train: true``) the network's training."""

    SECTION: ClassVar[str] = "landmarks"
    FILE: ClassVar[str] = DE

    method: typing.Literal["fit", "cnn"]
    model_fit: Any  # FitSettings (built in __post_init__: a module the CLI need not import)
    train: bool
    checkpoint: str | None
    min_confidence: float
    #: Mean CNN confidence over the landmarks below which the scan fails (not a face the
    #: network can read: simulated faces 0.85-0.92, a real scan 0.87; an inside-out face 0.31).
    min_mean_confidence: float
    n_jobs: int
    seed: int
    views: Any  # TrainingViewSettings
    fit: LandmarkTrainingSettings

    def __post_init__(self) -> None:
        from face_health.landmarks.model_fit import FitSettings
        from face_health.landmarks.views import TrainingViewSettings

        where = f"{self.FILE}, section landmarks"
        if not isinstance(self.model_fit, FitSettings):
            fit = build_dataclass(FitSettings, self.model_fit, f"{where}: model_fit")
            object.__setattr__(self, "model_fit", fit)
        if not isinstance(self.views, TrainingViewSettings):
            views = build_dataclass(TrainingViewSettings, self.views, f"{where}: views")
            object.__setattr__(self, "views", views)


@dataclasses.dataclass(frozen=True)
class AlignmentSettings(Section):
    """``alignment``: the similarity fit to the template and the face crop."""

    SECTION: ClassVar[str] = "alignment"
    FILE: ClassVar[str] = DE

    scale: bool
    crop_margin_mm: float
    max_residual_mm: float
    n_jobs: int


@dataclasses.dataclass(frozen=True)
class ViewSettings(Section):
    """``views``: the directional renders for the ResNet-50."""

    SECTION: ClassVar[str] = "views"
    FILE: ClassVar[str] = DE

    n_per_direction: int
    interval_deg: float
    image_size: int
    channel: typing.Literal["colour", "shaded"]
    fov_deg: float
    distance_mm: float
    n_jobs: int
    contact_sheet_subjects: int
    antialias: bool  # pyrender's 4x multisampling

    def __post_init__(self) -> None:
        if self.n_per_direction < 3:
            raise SettingsError(
                f"{self.FILE}, section views: n_per_direction must be at least 3 (the method "
                f"renders at least three views each way), got {self.n_per_direction}"
            )


@dataclasses.dataclass(frozen=True)
class EmbeddingSettings(Section):
    """``embedding``: the ResNet-50 of the global features."""

    SECTION: ClassVar[str] = "embedding"
    FILE: ClassVar[str] = FE

    image_size: int
    views_per_subject_per_epoch: int
    batch_size: int
    aggregate: typing.Literal["mean", "concat"]
    seed: int
    patience: int
    cross_fit_folds: int
    module: dict[str, Any]
    #: Keyword arguments of ``lightning.Trainer``: ``accelerator``, ``devices`` and
    #: ``strategy`` required and checked (:func:`check_trainer_options`), others pass;
    #: ``precision`` and ``max_epochs`` belong to ``module`` (the embedding of new scans uses
    #: the training precision, the cosine schedule spans the epochs).
    trainer: dict[str, Any]

    def __post_init__(self) -> None:
        check_trainer_options(
            self.trainer,
            f"{self.FILE}, section embedding: trainer",
            required=DISTRIBUTED_KEYS,
            refused={
                "precision": "set module.precision (new scans are embedded in it too)",
                "max_epochs": "set module.max_epochs (the cosine schedule spans it)",
            },
        )


@dataclasses.dataclass(frozen=True)
class RadiomicsSettings(Section):
    """``radiomics``: the 20 regions and their radiomic features."""

    SECTION: ClassVar[str] = "radiomics"
    FILE: ClassVar[str] = FE

    region_topology: typing.Literal["fitted", "scan"]
    mm_per_pixel: float
    levels: int
    #: More empty regions than this fail the scan: an empty region's radiomics would be
    #: filled in from the training cohort, describing an average face there, not this one.
    max_empty_regions: int
    n_jobs: int
    picture_subjects: int


@dataclasses.dataclass(frozen=True)
class FacialOmicsSettings(Section):
    """``facial_omics``: standardise + PCA of the radiomics."""

    SECTION: ClassVar[str] = "facial_omics"
    FILE: ClassVar[str] = FE

    n_components: float | int
    max_missing: float
    per_region: bool


@dataclasses.dataclass(frozen=True)
class ShapeFeatureSettings(Section):
    """``shape_features``: the dense model fit as features (``omics.shape``)."""

    SECTION: ClassVar[str] = "shape_features"
    FILE: ClassVar[str] = FE

    n_displacement: int


@dataclasses.dataclass(frozen=True)
class MlpSettings:
    """``modelling.mlp``: the per-group MLPs."""

    hidden: tuple[int, ...]
    dropout: float
    lr: float
    weight_decay: float
    max_epochs: int
    patience: int
    batch_size: int
    #: MLPs averaged per group, seeds ``seed`` to ``seed + ensemble - 1`` (1: one MLP).
    ensemble: int


@dataclasses.dataclass(frozen=True)
class ModellingSettings(Section):
    """``modelling``: which models on which features."""

    SECTION: ClassVar[str] = "modelling"
    FILE: ClassVar[str] = MO

    per: typing.Literal["group", "target"]
    inputs: typing.Literal["global", "local", "shape", "both", "local_shape", "all"]
    kinds: tuple[str, ...]
    seed: int
    n_bootstrap: int
    torch_threads: int
    mlp: MlpSettings
    ood_percentile: float
    #: ``ood_score`` above which a scan is refused (no predictions) rather than flagged.
    ood_refuse_score: float
    #: processes for the ablation's variants (0: all cores)
    n_jobs: int


@dataclasses.dataclass(frozen=True)
class SimulateSettings:
    """``inference.simulate_if_missing``: new synthetic subjects for the default."""

    n: int
    seed: int
    n_jobs: int


@dataclasses.dataclass(frozen=True)
class InferenceSettings(Section):
    """``inference``: scoring new scans with a trained model."""

    SECTION: ClassVar[str] = "inference"
    FILE: ClassVar[str] = IN

    scans_path: str
    model: str | None
    simulate_if_missing: SimulateSettings


@dataclasses.dataclass(frozen=True)
class FinalTestCohortSettings:
    """``final_test.cohort``: the simulated final test cohort."""

    n: int
    seed: int
    n_jobs: int


@dataclasses.dataclass(frozen=True)
class FinalTestSettings(Section):
    """``final_test``: the cohort behind the README's headline numbers, and the model."""

    SECTION: ClassVar[str] = "final_test"
    FILE: ClassVar[str] = FT

    path: str
    model: str | None
    cohort: FinalTestCohortSettings
    n_jobs: int
    pairs: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class ParallelSettings(Section):
    """``parallel``: where the per-subject stages run (``face_health.parallel``).

    ``processes`` keeps local worker processes (each stage's ``n_jobs``); ``dask`` sends every
    subject to a ``dask.distributed`` cluster: the scheduler at ``scheduler``
    (``tcp://host:8786``) or, when it is null, a ``LocalCluster`` of ``n_workers`` one-thread
    worker processes (0: one per core). A stage with ``n_jobs: 1`` still runs in the Kedro
    process on either backend (debugging). Workers leave their bulky results (meshes, views)
    in ``spool`` (an fsspec folder; null: the temporary directory, or in memory for a remote
    scheduler) until they are saved (``face_health.spool``).
    """

    SECTION: ClassVar[str] = "parallel"
    FILE: ClassVar[str] = "conf/*/parameters_parallel.yml"

    backend: typing.Literal["processes", "dask"]
    scheduler: str | None
    n_workers: int
    dashboard_address: str | None
    spool: str | None

    def __post_init__(self) -> None:
        where = f"{self.FILE}, section parallel"
        if self.scheduler is not None and not re.match(r"^[a-z]+://\S+$", self.scheduler):
            raise SettingsError(
                f"{where}: scheduler must be an address like tcp://host:8786 (or null for a "
                f"LocalCluster on this machine), got {self.scheduler!r}"
            )
        if self.n_workers < 0:
            raise SettingsError(f"{where}: n_workers must be 0 (one per core) or more")


#: The method's per-scan sections, in the order a scan meets them (what a scorer keeps).
SCAN_SECTIONS: dict[str, type[Section]] = {
    "ingest": IngestSettings,
    "landmarks": LandmarkSettings,
    "alignment": AlignmentSettings,
    "views": ViewSettings,
    "embedding": EmbeddingSettings,
    "radiomics": RadiomicsSettings,
}

#: Every section of ``conf/base`` with a settings class.
SECTIONS: dict[str, type[Section]] = {
    **SCAN_SECTIONS,
    "cohort": CohortSourceSettings,
    "qc": QcSettings,
    "splits": SplitSettings,
    "contact_sheet": ContactSheetSettings,
    "facial_omics": FacialOmicsSettings,
    "shape_features": ShapeFeatureSettings,
    "modelling": ModellingSettings,
    "inference": InferenceSettings,
    "final_test": FinalTestSettings,
    "parallel": ParallelSettings,
}


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory, then this
    package's source tree) with ``pyproject.toml`` and ``conf/base``; None when none is."""
    starts = [(start or Path.cwd()).resolve()]
    if start is None:
        starts.append(Path(__file__).resolve().parent)
    for first in starts:
        for folder in (first, *first.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "conf" / "base").is_dir():
                return folder
    return None


def project_parameters(env: str | None = None, project: Path | None = None) -> dict[str, Any]:
    """The project's parameters as ``kedro run --env ENV`` sees them (base, then the
    environment; ``local`` when ``env`` is None), without starting a Kedro session."""
    from kedro.config import OmegaConfigLoader

    from face_health.settings import CONFIG_LOADER_ARGS

    root = find_project_root(project)
    if root is None:
        raise SettingsError(
            "no Kedro project found (a folder with pyproject.toml and conf/base) at or above "
            f"{(project or Path.cwd()).resolve()}; run from the project or pass its path"
        )
    loader = OmegaConfigLoader(
        conf_source=str(root / "conf"),
        env=env or CONFIG_LOADER_ARGS["default_run_env"],
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"},
    )
    return dict(loader["parameters"])


def section(name: str, env: str | None = None, project: Path | None = None) -> Section:
    """One section of the project's parameters as its settings object."""
    return SECTIONS[name].from_parameters(project_parameters(env, project).get(name))


def base_section(name: str, **overrides: Any) -> Section:
    """The project's ``conf/base`` settings of ``name`` with single fields replaced: the
    defaults for a library call, a benchmark or a test, read from the YAML like a run."""
    return dataclasses.replace(section(name, env="base"), **overrides)
