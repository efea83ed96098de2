"""Settings of the prediction service: ``conf/base/serving.yml``, ``conf/local/serving.yml``,
the ``FACE_HEALTH_API_TOKEN`` environment variable, then command-line flags, each overriding
the one before.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

TOKEN_ENV_VAR = "FACE_HEALTH_API_TOKEN"
#: Shorter bearer tokens are refused: they can be guessed.
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost",)


class SettingsError(ValueError):
    """The service cannot start with these settings; the message says what to change."""


@dataclass(frozen=True)
class ServingSettings:
    """Everything the service needs besides the model itself.

    Attributes
    ----------
    model : str or None
        A run id, ``models:/face_health@newest``, a ``runs:/`` URI or a model folder;
        ``None`` serves the newest model that ``training`` logged.
    tracking_uri : str
        The MLflow backend to find the model and its run in.
    host, port : str, int
        Where uvicorn listens.
    token : str or None
        The bearer token required on ``/v1/*``.
    insecure_dev : bool
        Allow running without a token; only on a loopback host.
    max_upload_mb : float
        Largest request body, enforced while it streams in (413).
    max_uncompressed_mb : float
        Largest total size of a zip's entries once extracted (413).
    max_zip_entries : int
        Most entries in a zip (413).
    max_compression_ratio : float
        Largest uncompressed / compressed size of one zip entry (413).
    max_texture_pixels : int
        Largest texture image, in pixels (413): not a serving setting but the project's
        ``ingest.max_texture_pixels``, the one limit ingest applies for every entry point.
    request_timeout_s : float
        Time limit of one prediction request, upload included (504).
    max_pending : int
        Prediction requests in flight at once, counted once their upload has arrived;
        more get 503 at once.
    header_timeout_s : float
        Time a client has to send a request's line and headers, from its first byte (or
        from connecting); then 408 and the connection is closed.
    max_header_kb : float
        Largest request line plus headers (431).
    max_url_kb : float
        Longest request target, path and query (414).
    min_upload_kb_per_s : float
        Slowest upload accepted, measured over ``upload_rate_window_s`` (408).
    upload_rate_window_s : float
        The window over which the upload rate is measured.
    keep_alive_timeout_s : float
        How long an idle keep-alive connection stays open between requests.
    worker_start_method : str
        ``spawn`` or ``forkserver``: how the scoring worker process is started.
    worker_start_timeout_s : float
        Time a scoring worker may take to load and warm up the model.
    storage_dir : Path or None
        Keep each upload in ``storage_dir/<request id>/``; ``None`` deletes it after the request.
    ssl_certfile, ssl_keyfile : Path or None
        Serve HTTPS with this certificate and key (both or neither); otherwise plain HTTP,
        to be put behind a TLS proxy off loopback, since the token travels in each request.
    """

    model: str | None = None
    tracking_uri: str = "sqlite:///mlflow.db"
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    insecure_dev: bool = False
    max_upload_mb: float = 100.0
    max_uncompressed_mb: float = 300.0
    max_zip_entries: int = 16
    max_compression_ratio: float = 100.0
    request_timeout_s: float = 120.0
    max_pending: int = 8
    header_timeout_s: float = 10.0
    max_header_kb: float = 32.0
    max_url_kb: float = 8.0
    min_upload_kb_per_s: float = 10.0
    upload_rate_window_s: float = 10.0
    keep_alive_timeout_s: float = 5.0
    worker_start_method: str = "spawn"
    worker_start_timeout_s: float = 600.0
    storage_dir: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_uncompressed_bytes(self) -> int:
        return int(self.max_uncompressed_mb * 2**20)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)

    @property
    def max_url_bytes(self) -> int:
        return int(self.max_url_kb * 1024)

    @property
    def min_upload_bytes_per_s(self) -> float:
        return self.min_upload_kb_per_s * 1024

    @property
    def max_texture_pixels(self) -> int:
        from face_health.ingest.limits import project_texture_pixel_limit

        return project_texture_pixel_limit()

    def with_overrides(self, **overrides: Any) -> ServingSettings:
        """A copy with the given fields replaced; ``None`` values are ignored (flag not given)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding
    ``pyproject.toml`` and ``conf/base``; ``start`` itself when there is none."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "conf" / "base").is_dir():
            return folder
    return start


def load_settings(
    project_root: Path | None = None, environ: dict[str, str] | None = None
) -> ServingSettings:
    """Read ``conf/base/serving.yml`` then ``conf/local/serving.yml`` (either may be missing),
    take the token from ``FACE_HEALTH_API_TOKEN`` when set, and make the SQLite tracking URI
    and the storage folder absolute, relative to the project root.

    Raises
    ------
    SettingsError
        An unknown key or a value of the wrong kind.
    """
    root = find_project_root(project_root)
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for layer in ("base", "local"):
        values.update(_read_yaml(root / "conf" / layer / "serving.yml"))
    known = {f.name for f in fields(ServingSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown serving settings {unknown}; known: {sorted(known)}")
    if "insecure_dev" in values:
        raise SettingsError("insecure_dev is only a command-line flag (--insecure-dev)")
    if environ.get(TOKEN_ENV_VAR):
        values["token"] = environ[TOKEN_ENV_VAR]
    settings = ServingSettings().with_overrides(**values)
    return absolute_paths(settings, root)


def absolute_paths(settings: ServingSettings, root: Path) -> ServingSettings:
    """A relative ``sqlite:///`` tracking URI and relative paths made absolute under ``root``."""
    from face_health.hooks import project_sqlite_uri

    uri = project_sqlite_uri(settings.tracking_uri, root)
    paths = {}
    for key in ("storage_dir", "ssl_certfile", "ssl_keyfile"):
        path = getattr(settings, key)
        if path is not None:
            paths[key] = Path(path) if Path(path).is_absolute() else (root / path).resolve()
    return replace(settings, tracking_uri=uri, **paths)


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``; False for ``0.0.0.0`` and others."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_startup(settings: ServingSettings) -> None:
    """Refuse settings the service must not start with.

    Without a token the service starts only with ``insecure_dev`` on a loopback host; a token
    shorter than :data:`MIN_TOKEN_LENGTH` is refused; every limit must be positive.

    Raises
    ------
    SettingsError
        What is wrong and how to fix it.
    """
    if settings.token is None or settings.token == "":
        if not settings.insecure_dev:
            raise SettingsError(
                f"no API token: set the environment variable {TOKEN_ENV_VAR} (or `token` in "
                "conf/local/serving.yml); for development on this machine only, use "
                "--host 127.0.0.1 --insecure-dev"
            )
        if not is_loopback(settings.host):
            raise SettingsError(
                f"--insecure-dev serves without a token and is allowed only on a loopback "
                f"host (127.0.0.1, ::1, localhost), not {settings.host!r}; set "
                f"{TOKEN_ENV_VAR} to serve on other interfaces"
            )
    elif len(settings.token) < MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"the API token is too short ({len(settings.token)} characters); use at least "
            f"{MIN_TOKEN_LENGTH}, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    limits = {
        "max_upload_mb": settings.max_upload_mb,
        "max_uncompressed_mb": settings.max_uncompressed_mb,
        "max_zip_entries": settings.max_zip_entries,
        "max_compression_ratio": settings.max_compression_ratio,
        "request_timeout_s": settings.request_timeout_s,
        "max_pending": settings.max_pending,
        "header_timeout_s": settings.header_timeout_s,
        "max_header_kb": settings.max_header_kb,
        "max_url_kb": settings.max_url_kb,
        "min_upload_kb_per_s": settings.min_upload_kb_per_s,
        "upload_rate_window_s": settings.upload_rate_window_s,
        "keep_alive_timeout_s": settings.keep_alive_timeout_s,
        "worker_start_timeout_s": settings.worker_start_timeout_s,
    }
    bad = [name for name, value in limits.items() if not _positive(value)]
    if bad:
        raise SettingsError(f"these serving limits must be positive numbers: {', '.join(bad)}")
    if settings.max_url_kb > settings.max_header_kb:
        raise SettingsError("max_url_kb must not exceed max_header_kb (the URL is in the header)")
    if settings.worker_start_method not in ("spawn", "forkserver"):
        raise SettingsError(
            f"worker_start_method must be spawn or forkserver, not {settings.worker_start_method!r}"
        )
    tls = [settings.ssl_certfile, settings.ssl_keyfile]
    if any(tls) and not all(tls):
        raise SettingsError("HTTPS needs both ssl_certfile and ssl_keyfile")
    missing = [str(path) for path in tls if path is not None and not Path(path).is_file()]
    if missing:
        raise SettingsError(f"TLS files not found: {', '.join(missing)}")


def _positive(value: Any) -> bool:
    """A finite number above zero (not a bool, not inf or NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 < value < float("inf")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise SettingsError(f"{path} must hold a mapping of serving settings")
    for key in ("storage_dir", "ssl_certfile", "ssl_keyfile"):
        if content.get(key) is not None:
            content[key] = Path(content[key])
    return content
