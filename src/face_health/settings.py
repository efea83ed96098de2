"""Kedro project settings."""

# First: Kedro imports this module before it builds the config loader or loads plugins.
from face_health.quiet import silence_known_library_noise

silence_known_library_noise()

from kedro.config import OmegaConfigLoader  # noqa: E402

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "globals": ["globals*", "globals*/**"],
    },
    # An environment (tiny, local) overrides single nested keys, not whole sections.
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
}

from face_health.hooks import (  # noqa: E402
    IgnoredLocalConfigHook,
    MlflowArtifactHook,
    OneLineErrorHook,
    ParallelBackendHook,
    ProjectMlflowBackendHook,
    RunTagsHook,
)

HOOKS = (
    IgnoredLocalConfigHook(),
    ProjectMlflowBackendHook(),
    MlflowArtifactHook(),
    RunTagsHook(),
    OneLineErrorHook(),
    ParallelBackendHook(),
)
