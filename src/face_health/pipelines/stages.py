"""How a pipeline names its stages so that ``kedro viz`` reads as the method.

Each stage is a Kedro namespace (collapsible in the viz, selectable with
``kedro run --namespaces=feature.local_features``) and a tag of the same name
(``kedro run --tags=landmarks``). Datasets keep their catalog names: a namespace groups the
nodes, it does not rename what flows between stages.
"""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline


def stage(name: str, parts: Iterable[Node | Pipeline]) -> Pipeline:
    """The nodes (or sub-stages) ``parts`` as the stage ``name``: namespace and tag."""
    return Pipeline(list(parts), namespace=name, prefix_datasets_with_namespace=False, tags=[name])
