"""The graph IR: a DAG of :mod:`onespike.conversion.ir.nodes` in topological order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from onespike.conversion.ir.nodes import InputNode, Node, OutputNode
from onespike.errors import ArgumentError, UnsupportedOperationError

__all__ = ["Graph"]


@dataclass
class Graph:
    """A DAG of IR nodes. ``nodes`` is in topological order, the first is the single
    :class:`InputNode`, the last the single :class:`OutputNode`."""

    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}

    def add(self, node: Node) -> Node:
        if node.name in self._by_name:
            raise ArgumentError(f"duplicate node name {node.name!r}")
        for i in node.inputs:
            if i not in self._by_name:
                raise ArgumentError(f"node {node.name!r} uses {i!r} before it is defined")
        self.nodes.append(node)
        self._by_name[node.name] = node
        return node

    def __getitem__(self, name: str) -> Node:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def users(self, name: str) -> list[Node]:
        """Nodes that consume the output of ``name``."""
        return [n for n in self.nodes if name in n.inputs]

    def check_connected(self) -> None:
        """Raise :class:`UnsupportedOperationError` for an operation whose result never reaches
        the output (it would be computed for nothing, or the model has a second output)."""
        if not self.nodes or not isinstance(self.nodes[0], InputNode):
            raise ArgumentError("graph has no input node")
        if not isinstance(self.nodes[-1], OutputNode):
            raise ArgumentError("graph has no output node")
        live = {self.nodes[-1].name}
        for node in reversed(self.nodes):
            if node.name in live:
                live.update(node.inputs)
        dead = [n for n in self.nodes if n.name not in live]
        if dead:
            raise UnsupportedOperationError(
                "disconnected operation", dead[0].source,
                "its result does not reach the model's output",
            )
