"""Draw the import graph of ``src/imrepro`` (Graphviz dot) and check the stage order.

    python docs/import_graph.py --dot docs/img/imports_after.dot          # subpackages (default)
    python docs/import_graph.py --modules --src /tmp/old/src --dot old.dot   # one node per module
    python docs/import_graph.py --check    # exit 1 if a stage imports a later stage

Nodes are subpackages (``core``, ``data``, ``train``, ``eval``, ``eval.judge``, ``report``) and the
top-level modules (``catalogue``, ``workflow_config``: the Snakefile's config checker, which reads every
stage's names); every module is a node of some stage, with no exception list; an edge ``a -> b`` means
a module of ``a`` imports one of ``b`` at module level or inside a function (both count: a lazy import
is still a dependency).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# the DAG's order; a stage may import only stages before it (core: shared by all, imports none)
# (workflow_config, the Snakefile's config checker, reads every stage's vocabulary: converter signatures,
# benchmark names; so it stands beside catalogue, after the stages)
STAGES = ("core", "data", "train", "eval", "eval.judge", "catalogue", "workflow_config", "report")


def module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(src: Path) -> dict[str, set[str]]:
    """imrepro module -> the imrepro modules it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted((src / "imrepro").rglob("*.py")):
        name = module_name(path, src)
        graph[name]  # a module that imports nothing is a node too
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            known = [t for t in targets if t.startswith("imrepro.") and _exists(src, t)]
            graph[name].update(known)
    return graph


def _exists(src: Path, module: str) -> bool:
    base = src.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def group(module: str) -> str:
    """The stage of a module: ``imrepro.eval.judge.client`` -> ``eval.judge``; a top-level module is its own
    stage."""
    parts = module.split(".")[1:]
    if parts[:2] == ["eval", "judge"]:
        return "eval.judge"
    return parts[0] if parts else "imrepro"


def edges(graph: dict[str, set[str]], by_stage: bool) -> set[tuple[str, str]]:
    key = group if by_stage else (lambda m: m.removeprefix("imrepro."))
    return {(key(a), key(b)) for a, targets in graph.items() for b in targets if key(a) != key(b)}





def to_dot(nodes, pairs) -> str:
    lines = ["digraph imports {", "  rankdir=LR; node [shape=box, style=rounded, fontname=sans, fontsize=10];"]
    lines += [f'  "{n}";' for n in sorted(nodes)] + [f'  "{a}" -> "{b}";' for a, b in sorted(pairs)]
    return "\n".join(lines + ["}"]) + "\n"


def backward(pairs) -> list[tuple[str, str]]:
    """Edges from a stage to a later one, or from or to a node outside :data:`STAGES` (a new top-level
    module must be placed in the order before the check passes)."""
    rank = {stage: i for i, stage in enumerate(STAGES)}
    return sorted((a, b) for a, b in pairs if a not in rank or b not in rank or rank[b] > rank[a])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=SRC, help="the folder holding imrepro/ (default: %(default)s)")
    parser.add_argument("--modules", action="store_true", help="one node per module instead of per stage")
    parser.add_argument("--dot", type=Path, help="write the graph here (Graphviz dot)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a stage imports a later one")
    args = parser.parse_args()
    graph = imports(args.src)
    pairs = edges(graph, by_stage=not args.modules)
    nodes = {group(m) if not args.modules else m.removeprefix("imrepro.") for m in graph} - {"imrepro"}
    if args.dot:
        args.dot.write_text(to_dot(nodes, {(a, b) for a, b in pairs if "imrepro" not in (a, b)}))
    if args.check:
        wrong = backward(edges(graph, by_stage=True))
        for a, b in wrong:
            print(f"{a} imports {b}, a later stage (order: {' < '.join(STAGES)})", file=sys.stderr)
        sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
