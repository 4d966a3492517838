"""The graph IR: a DAG of :mod:`onespike.ir.nodes` in topological order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import UnsupportedOperationError
from .nodes import InputNode, Node, OutputNode

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
            raise ValueError(f"duplicate node name {node.name!r}")
        for i in node.inputs:
            if i not in self._by_name:
                raise ValueError(f"node {node.name!r} uses {i!r} before it is defined")
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

    def as_chain(self) -> list[Node]:
        """Return the nodes as a chain input → … → output.

        Raises :class:`UnsupportedOperationError` at the first node with more than one input or
        more than one user (residual connections and concatenation are not supported yet).
        """
        if not self.nodes or not isinstance(self.nodes[0], InputNode):
            raise ValueError("graph has no input node")
        if not isinstance(self.nodes[-1], OutputNode):
            raise ValueError("graph has no output node")
        chain: list[Node] = [self.nodes[0]]
        current = self.nodes[0]
        while not isinstance(current, OutputNode):
            users = self.users(current.name)
            if len(users) != 1:
                raise UnsupportedOperationError(
                    "branching",
                    current.source,
                    f"its output is used by {len(users)} operations "
                    f"({', '.join(u.source for u in users) or 'none'})",
                    "Only chains are supported; residual connections and concatenation are "
                    "not supported yet",
                )
            nxt = users[0]
            if len(nxt.inputs) != 1:
                raise UnsupportedOperationError(
                    "multi-input operation",
                    nxt.source,
                    f"it combines {len(nxt.inputs)} tensors",
                    "Residual additions and concatenation are not supported yet",
                )
            chain.append(nxt)
            current = nxt
        if len(chain) != len(self.nodes):
            extra = [n.source for n in self.nodes if n not in chain]
            raise UnsupportedOperationError(
                "disconnected operation", extra[0], "it does not lie on the input→output path"
            )
        return chain
