"""Draw the import graph of ``face_health`` as a picture for the docs, and check its layering.

Every ``.py`` file under ``src/face_health`` is parsed with :mod:`ast` (nothing is imported),
and every ``import face_health.x...`` / ``from face_health.x... import ...`` (relative imports
included) becomes a module edge. An import inside a function is a *lazy* edge (drawn dashed);
an ``if TYPE_CHECKING:`` block is ignored. Module edges are aggregated to package edges:

- one box per stage package (the method, left to right), its modules listed inside;
- the Kedro layer above: ``pipelines`` (the wiring), ``datasets`` and the Kedro / command-line
  entry modules (``settings``, ``hooks``, ``pipeline_registry``, ``__main__``, ``command_line``);
- every other top-level module below, as a shared helper (``schema``, ``parallel``, ...).

Edge counts are distinct module -> module imports; a package edge whose imports are all lazy is
dashed, and its label carries ``L`` (``3+2L``: 3 modules import eagerly, 2 only lazily).

It prints the package -> package edge table and exits 1, with a message, if an import names a
``face_health`` module (or a name in one) that does not exist, or if a stage package imports
Kedro (``kedro``, ``kedro_*``) or ``face_health.pipelines``::

    .venv/bin/python scripts/import_graph.py            # table + docs/images/import_graph.png
    .venv/bin/python scripts/import_graph.py --check    # the checks only, no picture

Only the stage order and the names of the Kedro layer are written down here (``STAGES``,
``KEDRO_PACKAGES``, ``ENTRY_MODULES``): a new top-level module is drawn as a shared helper and a
new subpackage that is not a stage in the bottom row, on the next run, with no edit.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "face_health"
SRC = ROOT / "src" / PACKAGE
DEFAULT_OUT = ROOT / "docs" / "images" / "import_graph.png"

#: The stage packages in method order (left to right in the picture).
STAGES = (
    "synthetic",
    "ingest",
    "landmarks",
    "alignment",
    "views",
    "embedding",
    "omics",
    "modelling",
    "evaluation",
    "serving",
)
#: Subpackages drawn in the Kedro row above the stages.
KEDRO_PACKAGES = ("pipelines", "datasets")
#: Top-level names that count as "Kedro" for the layering check.
KEDRO_ROOTS = ("kedro",)


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Import:
    """One imported ``face_health`` target (or a forbidden third-party import) in a module."""

    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (resolved to an existing module where possible)
    name: str | None  # for ``from target import name``: the name, else None
    lazy: bool  # inside a function
    path: Path
    line: int


@dataclass
class ModuleInfo:
    name: str
    path: Path
    is_package: bool
    bound: set[str] = field(default_factory=set)  # names bound at import time
    open_namespace: bool = False  # star import or module __getattr__: any name may exist


def module_name(path: Path, src: Path) -> tuple[str, bool]:
    """The dotted name of the file ``path`` under the package directory ``src``."""
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _bound_names(body: list[ast.stmt], info: ModuleInfo) -> None:
    """The names a module body binds at import time (not inside functions or classes)."""

    def targets(node: ast.expr) -> Iterator[str]:
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Tuple | ast.List):
            for element in node.elts:
                yield from targets(element)
        elif isinstance(node, ast.Starred):
            yield from targets(node.value)

    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            info.bound.add(stmt.name)
            if stmt.name == "__getattr__" and not isinstance(stmt, ast.ClassDef):
                info.open_namespace = True
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                info.bound.update(targets(target))
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
            info.bound.update(targets(stmt.target))
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                info.bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if alias.name == "*":
                    info.open_namespace = True
                else:
                    info.bound.add(alias.asname or alias.name)
        elif isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                _bound_names(stmt.body, info)
            _bound_names(stmt.orelse, info)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            for block in (stmt.body, stmt.orelse, stmt.finalbody):
                _bound_names(block, info)
            for handler in stmt.handlers:
                _bound_names(handler.body, info)
        elif isinstance(stmt, ast.For | ast.AsyncFor | ast.While | ast.With | ast.AsyncWith):
            if isinstance(stmt, ast.For | ast.AsyncFor):
                info.bound.update(targets(stmt.target))
            _bound_names(stmt.body, info)
            _bound_names(getattr(stmt, "orelse", []), info)


class _ImportCollector(ast.NodeVisitor):
    """Every import of a module, with whether it sits inside a function; skips TYPE_CHECKING."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.depth = 0  # function nesting
        self.found: list[tuple[str, str | None, bool, int]] = []  # (module, name, lazy, line)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        if not _is_type_checking(node.test):
            for stmt in node.body:
                self.visit(stmt)
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, None, self.depth > 0, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, node.module] if node.module else base)
        else:
            module = node.module or ""
        for alias in node.names:
            name = None if alias.name == "*" else alias.name
            self.found.append((module, name, self.depth > 0, node.lineno))


@dataclass
class Graph:
    """The parsed package: its modules, its ``face_health`` imports and the problems found."""

    modules: dict[str, ModuleInfo]
    imports: list[Import]
    stale: list[str]
    layer_violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.stale and not self.layer_violations


def _location(path: Path, line: int) -> str:
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    return f"{shown}:{line}"


def group_of(module: str) -> str:
    """The node a module is drawn in: its top-level subpackage, or itself if top-level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def parse(src: Path = SRC) -> Graph:
    """Parse every ``.py`` file under ``src`` (the ``face_health`` directory), check imports."""
    package = src.name
    modules: dict[str, ModuleInfo] = {}
    trees: dict[str, ast.Module] = {}
    for path in sorted(src.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name, is_package = module_name(path, src)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        info = ModuleInfo(name, path, is_package)
        _bound_names(tree.body, info)
        modules[name] = info
        trees[name] = tree
    # Directories without __init__.py (namespace packages) that hold modules.
    for name in list(modules):
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent not in modules:
                path = src.parent.joinpath(*parts[:i])
                modules[parent] = ModuleInfo(parent, path, True, open_namespace=False)

    imports: list[Import] = []
    stale: list[str] = []
    violations: list[str] = []
    for name, tree in trees.items():
        info = modules[name]
        collector = _ImportCollector(name, info.is_package)
        collector.visit(tree)
        stage = group_of(name) if name != package else None
        for target, imported, lazy, line in collector.found:
            where = _location(info.path, line)
            shown = f"from {target} import {imported}" if imported else f"import {target}"
            root = target.split(".")[0]
            if stage in STAGES and (
                root in KEDRO_ROOTS or any(root.startswith(f"{k}_") for k in KEDRO_ROOTS)
            ):
                violations.append(f"{where}: stage package {stage!r} imports Kedro: {shown}")
            if root != package:
                continue
            if target not in modules:
                stale.append(f"{where}: no module {target!r}: {shown}")
                continue
            resolved = target
            if imported is not None:
                submodule = f"{target}.{imported}"
                if submodule in modules:
                    resolved = submodule
                else:
                    owner = modules[target]
                    if not owner.open_namespace and imported not in owner.bound:
                        stale.append(f"{where}: {target!r} has no name {imported!r}: {shown}")
                        continue
            if stage in STAGES and group_of(resolved) == "pipelines":
                violations.append(f"{where}: stage package {stage!r} imports pipelines: {shown}")
            if resolved == package:  # ``import face_health``: the root, not a node
                continue
            imports.append(Import(name, resolved, imported, lazy, info.path, line))
    return Graph(modules, imports, stale, violations)


def check(src: Path = SRC) -> Graph:
    """The checks alone (what ``--check`` and the test run): see :attr:`Graph.ok`."""
    return parse(src)


# --------------------------------------------------------------------------------------------
# Aggregation


@dataclass
class Edge:
    eager: int = 0  # distinct module pairs with at least one import at import time
    lazy: int = 0  # distinct module pairs imported only inside functions

    @property
    def total(self) -> int:
        return self.eager + self.lazy


def package_edges(graph: Graph) -> dict[tuple[str, str], Edge]:
    """Package -> package edges, counted as distinct module -> module pairs (no self edges)."""
    pairs: dict[tuple[str, str], bool] = {}  # (source, target) module -> any eager import
    for imp in graph.imports:
        key = (imp.source, imp.target)
        pairs[key] = pairs.get(key, False) or not imp.lazy
    edges: dict[tuple[str, str], Edge] = defaultdict(Edge)
    for (source, target), eager in pairs.items():
        a, b = group_of(source), group_of(target)
        if a == b:
            continue
        if eager:
            edges[a, b].eager += 1
        else:
            edges[a, b].lazy += 1
    return dict(edges)


def node_members(graph: Graph) -> dict[str, list[str]]:
    """Each node's modules, dotted below it (``scan``, ``data_engineering.nodes``); a top-level
    module is a node of its own with no members. Package ``__init__`` files are not listed."""
    members: dict[str, list[str]] = {}
    for name, info in graph.modules.items():
        parts = name.split(".")
        if len(parts) < 2:
            continue  # the package root
        members.setdefault(parts[1], [])
        if len(parts) > 2 and not info.is_package:
            members[parts[1]].append(".".join(parts[2:]))
    return members


def format_table(edges: dict[tuple[str, str], Edge], order: list[str]) -> str:
    rank = {name: i for i, name in enumerate(order)}
    rows = sorted(edges.items(), key=lambda kv: (rank.get(kv[0][0], 99), rank.get(kv[0][1], 99)))
    head = f"{'from':<18} {'to':<18} {'eager':>5} {'lazy':>5}"
    lines = [head, "-" * len(head)]
    for (a, b), edge in rows:
        lines.append(f"{a:<18} {b:<18} {edge.eager:>5} {edge.lazy:>5}")
    lines.append(f"{len(rows)} package edges; counts are distinct module -> module imports")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Layout and drawing

#: Top-level modules of the Kedro / command-line layer: drawn in the row above the stages, with
#: ``pipelines`` and ``datasets``. Every other top-level module is a shared helper, drawn below.
ENTRY_MODULES = ("settings", "hooks", "pipeline_registry", "__main__", "command_line")

#: Edge colours, given to the importing nodes in drawing order.
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#ad494a",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#843c39",
)

WIDTH = 16.0  # inches; drawn at 100 dpi: 1600 px. One data unit is one inch.
MARGIN = 0.45
STAGE_GAP = 0.26
ROW_GAP = 1.6  # room for the edges between two rows
LINE_H = 0.17  # one module name inside a box
TITLE_H = 0.38
MODULE_H = 0.42  # a top-level module's box
ARC_LIFT = 0.6  # the most an arc between two stages rises above (or sinks below) their row
SMALL_FONT = 8.5
CHAR_W = 0.6 * SMALL_FONT / 72  # a monospace character at SMALL_FONT, inches


@dataclass
class Layout:
    top: list[str]
    stages: list[str]
    bottom: list[str]
    kinds: dict[str, str]  # node -> "stage" | "package" | "module"
    lines: dict[str, list[str]]  # node -> the text lines inside its box

    @property
    def order(self) -> list[str]:
        return [*self.top, *self.stages, *self.bottom]


def _box_lines(name: str, members: list[str], grouped: bool) -> list[str]:
    """The module names inside a package's box; ``grouped``: one line per subpackage."""
    if not grouped:
        return sorted(members)
    groups: dict[str, list[str]] = defaultdict(list)
    for member in sorted(members):
        head, _, rest = member.partition(".")
        groups[head if rest else ""].append(rest or head)
    lines = [f"{head}/: {', '.join(items)}" for head, items in sorted(groups.items()) if head]
    if groups.get(""):
        lines.append(", ".join(groups[""]))
    return lines


def classify(graph: Graph, edges: dict[tuple[str, str], Edge]) -> Layout:
    """Which node goes in which row, in which order."""
    members = node_members(graph)
    packages = {
        name.split(".")[1]
        for name, info in graph.modules.items()
        if name.count(".") == 1 and info.is_package
    }
    modules = sorted(set(members) - packages - {"__init__"})
    if any("__init__" in pair for pair in edges):
        modules.append("__init__")
    stages = [s for s in STAGES if s in packages]
    rank = {s: i for i, s in enumerate(stages)}

    def barycentre(node: str) -> float:
        """Mean stage rank of the stages this node is linked with (weighted by count)."""
        total = weight = 0.0
        for (a, b), edge in edges.items():
            other = b if a == node else a if b == node else None
            if other in rank:
                total += rank[other] * edge.total
                weight += edge.total
        return total / weight if weight else len(stages)

    top_packages = [p for p in KEDRO_PACKAGES if p in packages]
    entry = [m for m in ENTRY_MODULES if m in modules]
    top = sorted([*top_packages, *entry], key=lambda n: (barycentre(n), n))
    shared = [m for m in modules if m not in entry]
    others = sorted(packages - set(stages) - set(top_packages))
    bottom = sorted([*others, *shared], key=lambda n: (barycentre(n), n))
    kinds = {
        **dict.fromkeys(stages, "stage"),
        **dict.fromkeys([*top_packages, *others], "package"),
        **dict.fromkeys([*entry, *shared], "module"),
    }
    lines = {
        n: _box_lines(n, members.get(n, []), grouped=n in top_packages)
        for n, kind in kinds.items()
        if kind != "module"
    }
    return Layout(top, stages, bottom, kinds, lines)


def _row_widths(
    names: list[str], layout: Layout, degree: dict[str, int]
) -> tuple[dict[str, float], float]:
    """Box widths along a full row, and the gap between boxes: the room left over goes to the
    package boxes by their number of edges (the wiring fans out), else into the gaps."""
    gap = 0.18
    natural = {}
    for n in names:
        if layout.kinds[n] == "module":
            natural[n] = len(n) * 0.6 * 10 / 72 + 0.3
        else:
            longest = max([len(line) for line in layout.lines[n]] + [len(n) + 1])
            natural[n] = longest * CHAR_W + 0.3
    room = WIDTH - 2 * MARGIN - gap * (len(names) - 1)
    extra = room - sum(natural.values())
    if extra < 0:
        return {n: w * room / sum(natural.values()) for n, w in natural.items()}, gap
    weights = {n: degree.get(n, 0) for n in names if layout.kinds[n] != "module"}
    if sum(weights.values()) == 0:
        return natural, gap + (extra / (len(names) - 1) if len(names) > 1 else 0)
    total = sum(weights.values())
    return {n: w + extra * weights.get(n, 0) / total for n, w in natural.items()}, gap


def geometry(
    layout: Layout, edges: dict[tuple[str, str], Edge]
) -> tuple[dict[str, tuple[float, float, float, float]], float]:
    """Each node's box (x, y, width, height) in inches, and the figure's height."""
    degree: dict[str, int] = defaultdict(int)
    for (a, b), edge in edges.items():
        degree[a] += edge.total
        degree[b] += edge.total
    # Room for the arcs between two boxes of the top row (above it) or bottom row (below it).
    top_lane = 0.45 if any(a in layout.top and b in layout.top for a, b in edges) else 0.0
    bottom_lane = 0.6 if any(a in layout.bottom and b in layout.bottom for a, b in edges) else 0

    n = max(len(layout.stages), 1)
    stage_w = (WIDTH - 2 * MARGIN - (n - 1) * STAGE_GAP) / n

    def lines_h(node: str) -> float:
        return TITLE_H + LINE_H * len(layout.lines[node]) + 0.1

    stage_h = max([lines_h(s) for s in layout.stages] + [1.0])
    top_h = max([MODULE_H] + [lines_h(t) for t in layout.top if layout.kinds[t] != "module"])
    bottom_h = max([MODULE_H] + [lines_h(b) for b in layout.bottom if layout.kinds[b] != "module"])
    legend_h, title_h = 0.5, 0.5
    y_bottom = MARGIN + legend_h + bottom_lane
    y_stage = y_bottom + bottom_h + ROW_GAP
    y_top = y_stage + stage_h + ROW_GAP
    height = y_top + top_h + top_lane + title_h + MARGIN

    boxes = {}
    for i, name in enumerate(layout.stages):
        boxes[name] = (MARGIN + i * (stage_w + STAGE_GAP), y_stage, stage_w, stage_h)
    for names, y, h, align_low in (
        (layout.top, y_top, top_h, True),
        (layout.bottom, y_bottom, bottom_h, False),
    ):
        widths, gap = _row_widths(names, layout, degree)
        x = MARGIN
        for name in names:
            box_h = MODULE_H if layout.kinds[name] == "module" else h
            box_y = y if align_low else y + h - box_h  # modules sit on the stage side
            boxes[name] = (x, box_y, widths[name], box_h)
            x += widths[name] + gap
    return boxes, height


@dataclass
class Route:
    """How one package edge is drawn: from which side of ``a`` to which side of ``b``."""

    a: str
    b: str
    edge: Edge
    side_a: str  # "top" | "bottom" | "left" | "right"
    side_b: str
    kind: str  # "horizontal" (neighbour stages) | "arc" (same row) | "straight" | "detour"
    aim_a: float  # the x each end heads for: orders the ports along a side
    aim_b: float
    gap_x: float | None = None  # a detour's lane between two stage boxes


def _label(edge: Edge) -> str:
    label = str(edge.eager) if edge.eager else ""
    if edge.lazy:
        label = f"{label}+{edge.lazy}L" if label else f"{edge.lazy}L"
    return label


def draw(graph: Graph, out: Path) -> None:
    """Draw the package graph to ``out`` (PNG, 1600 px wide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    edges = package_edges(graph)
    layout = classify(graph, edges)
    boxes, height = geometry(layout, edges)
    row_of = {
        **dict.fromkeys(layout.top, 0),
        **dict.fromkeys(layout.stages, 1),
        **dict.fromkeys(layout.bottom, 2),
    }
    rank = {s: i for i, s in enumerate(layout.stages)}
    importers = [n for n in layout.order if any(a == n for a, _ in edges)]
    colour = {n: "#777777" for n in layout.order}
    colour.update({n: PALETTE[i % len(PALETTE)] for i, n in enumerate(importers)})
    fills = {"stage": "#eef4fb", "package": "#f4f1fa", "module": "#f7f7f2"}

    def centre_x(node: str) -> float:
        x, _, w, _ = boxes[node]
        return x + w / 2

    stage_boxes = [boxes[s] for s in layout.stages]
    stage_top = max((y + h for _, y, _, h in stage_boxes), default=0.0)
    stage_bottom = min((y for _, y, _, _ in stage_boxes), default=0.0)
    gaps = [MARGIN / 2] + [x + w + STAGE_GAP / 2 for x, _, w, _ in stage_boxes[:-1]]
    gaps.append(WIDTH - MARGIN / 2)
    used_gaps: set[int] = set()
    busy_gaps = {  # the gaps that neighbouring stages' edges cross
        min(rank[a], rank[b]) + 1
        for a, b in edges
        if a in rank and b in rank and abs(rank[a] - rank[b]) == 1
    }

    # 1. Route every edge: which side of each box it leaves / enters, and how.
    routes: list[Route] = []
    for (a, b), edge in edges.items():
        if a not in boxes or b not in boxes:
            continue
        ra, rb = row_of[a], row_of[b]
        gap_x = None
        if ra == rb == 1 and abs(rank[a] - rank[b]) == 1:
            forward = rank[b] > rank[a]
            kind = "horizontal"
            side_a, side_b = ("right", "left") if forward else ("left", "right")
        elif ra == rb:
            kind = "arc"
            if ra == 0:
                side = "top"
            elif ra == 2:
                side = "bottom"
            else:
                side = "bottom" if rank[b] > rank[a] else "top"
            side_a = side_b = side
        else:
            kind = "straight" if abs(ra - rb) == 1 else "detour"
            side_a, side_b = ("bottom", "top") if ra < rb else ("top", "bottom")
            if kind == "detour":
                want = (centre_x(a) + centre_x(b)) / 2
                best = min(
                    range(len(gaps)),
                    key=lambda i: abs(gaps[i] - want) + 3 * (i in used_gaps) + 2 * (i in busy_gaps),
                )
                used_gaps.add(best)
                gap_x = gaps[best]
        aim_a = gap_x if gap_x is not None else centre_x(b)
        aim_b = gap_x if gap_x is not None else centre_x(a)
        routes.append(Route(a, b, edge, side_a, side_b, kind, aim_a, aim_b, gap_x))

    # 2. Ports: the edges on one side of a box are spread along it, ordered by where they go.
    ports: dict[tuple[str, str], list[tuple[float, int, int]]] = defaultdict(list)
    for i, route in enumerate(routes):
        ports[route.a, route.side_a].append((route.aim_a, i, 0))
        ports[route.b, route.side_b].append((route.aim_b, i, 1))
    points: dict[tuple[int, int], tuple[float, float]] = {}
    for (node, side), attached in ports.items():
        x, y, w, h = boxes[node]
        attached.sort()
        k = len(attached)
        if side in ("left", "right"):
            for _, i, end in attached:
                forward = (side == "right") == (end == 0)
                points[i, end] = (
                    x + w if side == "right" else x,
                    y + h * (0.6 if forward else 0.4),
                )
            continue
        if w > 2.5:  # a wide box: each edge leaves straight at its partner, 0.12 in apart
            lo, hi, step = x + 0.15, x + w - 0.15, min(0.12, (w - 0.3) / max(k - 1, 1))
            xs = [min(max(aim, lo), hi) for aim, _, _ in attached]
            for j in range(1, k):
                xs[j] = max(xs[j], xs[j - 1] + step)
            xs[-1] = min(xs[-1], hi)
            for j in range(k - 2, -1, -1):
                xs[j] = min(xs[j], xs[j + 1] - step)
        else:
            xs = [x + w * (0.15 + 0.7 * (j + 0.5) / k) for j in range(k)]
        for px, (_, i, end) in zip(xs, attached, strict=True):
            points[i, end] = (px, y + h if side == "top" else y)

    fig = plt.figure(figsize=(WIDTH, height), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, height)
    ax.set_axis_off()

    # 3. Boxes.
    for node in layout.order:
        x, y, w, h = boxes[node]
        kind = layout.kinds[node]
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=0.06",
                linewidth=1.4 if kind == "module" else 2.2,
                edgecolor=colour[node],
                facecolor=fills[kind],
                zorder=3,
            )
        )
        if kind == "module":
            ax.text(x + w / 2, y + h / 2, node, ha="center", va="center", fontsize=10,
                    family="monospace", zorder=4)  # fmt: skip
            continue
        ax.text(x + w / 2, y + h - TITLE_H / 2 - 0.02, f"{node}/", ha="center", va="center",
                fontsize=12, fontweight="bold", family="monospace", color=colour[node],
                zorder=4)  # fmt: skip
        grouped = len(layout.lines[node]) and node in KEDRO_PACKAGES
        for j, line in enumerate(layout.lines[node]):
            ax.text(x + (0.12 if grouped else w / 2), y + h - TITLE_H - LINE_H * (j + 0.5),
                    line, ha="left" if grouped else "center", va="center", fontsize=SMALL_FONT,
                    family="monospace", color="#333333", zorder=4)  # fmt: skip

    # 4. Edges, widest first (so that thin ones stay on top).
    max_count = max((e.total for e in edges.values()), default=1)
    for i, route in sorted(enumerate(routes), key=lambda item: -item[1].edge.total):
        a, edge, kind, gap_x = route.a, route.edge, route.kind, route.gap_x
        start, end = points[i, 0], points[i, 1]
        style = dict(
            arrowstyle="-|>,head_length=0.55,head_width=0.28",
            mutation_scale=13,
            linewidth=0.9 + 4.2 * math.sqrt(edge.total / max_count),
            linestyle=(0, (4, 2.5)) if edge.eager == 0 else "-",
            color=colour[a],
            alpha=0.8,
            shrinkA=0,
            shrinkB=0,
            zorder=5 if kind in ("horizontal", "arc") and row_of[a] == 1 else 2,
        )
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        if kind == "arc":
            dx = end[0] - start[0]
            if row_of[a] == 1:  # a lane of nested arcs just above / below the stage row
                span = abs(dx) / (boxes[a][2] + STAGE_GAP)
                lift = min(0.2 + 0.06 * span, ARC_LIFT)
            else:  # the lane outside the top / bottom row
                lift = min(0.15 + 0.05 * abs(dx), 0.4 if row_of[a] == 0 else 0.5)
            up = row_of[a] == 0 or (row_of[a] == 1 and dx < 0)
            rad = (-2 if up else 2) * lift / dx
            arrow = FancyArrowPatch(start, end, connectionstyle=f"arc3,rad={rad}", **style)
            lx, ly = mx, my + (lift if up else -lift)  # the apex
        elif kind == "detour":
            lo, hi = stage_bottom - 0.3, stage_top + 0.3
            y1, y2 = (hi, lo) if start[1] > end[1] else (lo, hi)
            verts = [start, (gap_x, y1), (gap_x, y2), end]
            codes = [MplPath.MOVETO, MplPath.LINETO, MplPath.LINETO, MplPath.LINETO]
            arrow = FancyArrowPatch(path=MplPath(verts, codes), **style)
            lx, ly = gap_x, (y1 + y2) / 2
        else:
            arrow = FancyArrowPatch(start, end, **style)
            if kind == "horizontal":
                lx, ly = mx, my
            else:  # in a band of labels clear of the arcs' lanes along the stage row
                upper = max(start[1], end[1]) > stage_top
                band = stage_top + ARC_LIFT + 0.25 if upper else stage_bottom - ARC_LIFT - 0.25
                t = (band - start[1]) / (end[1] - start[1])
                lx = start[0] + (end[0] - start[0]) * t
                ly = band
        ax.add_patch(arrow)
        ax.text(lx, ly, _label(edge), ha="center", va="center", fontsize=8, fontweight="bold",
                color=colour[a], zorder=6,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
                )  # fmt: skip

    # 5. Title and legend.
    ax.text(MARGIN, height - MARGIN - 0.2, f"{PACKAGE}: import graph of the package",
            fontsize=15, fontweight="bold", va="center")  # fmt: skip
    ax.text(WIDTH - MARGIN, height - MARGIN - 0.2,
            "above: Kedro wiring, datasets, entry points   ·   middle: one package per stage, "
            "in method order   ·   below: shared modules", fontsize=10, ha="right",
            va="center", color="#444444")  # fmt: skip
    legend = (
        "arrow: importer → imported, coloured by the importer; width and label: distinct "
        "module → module imports; dashed / L: lazy (inside functions only); TYPE_CHECKING "
        "imports left out.   Regenerate: .venv/bin/python scripts/import_graph.py"
    )
    ax.text(WIDTH / 2, MARGIN + 0.15, legend, fontsize=9.5, ha="center", va="center",
            color="#444444")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, facecolor="white")
    plt.close(fig)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the picture (PNG)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="no picture: only check for stale imports and stage packages importing Kedro "
        "or face_health.pipelines",
    )
    parser.add_argument("--src", type=Path, default=SRC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    graph = parse(args.src)
    if not args.check:
        edges = package_edges(graph)
        print(format_table(edges, classify(graph, edges).order))
        draw(graph, args.out)
        print(f"wrote {args.out}")
    for line in graph.stale:
        print(f"STALE IMPORT  {line}", file=sys.stderr)
    for line in graph.layer_violations:
        print(f"LAYERING      {line}", file=sys.stderr)
    if graph.stale:
        print(
            f"error: {len(graph.stale)} import(s) of {PACKAGE} modules or names that do not "
            "exist (stale paths)",
            file=sys.stderr,
        )
    if graph.layer_violations:
        print(
            f"error: {len(graph.layer_violations)} import(s) of Kedro or {PACKAGE}.pipelines "
            "from a stage package (stages must not know the Kedro wiring)",
            file=sys.stderr,
        )
    if graph.ok:
        print(f"ok: {len(graph.imports)} {PACKAGE} imports in {len(graph.modules)} modules")
    return 0 if graph.ok else 1


if __name__ == "__main__":
    sys.exit(main())
