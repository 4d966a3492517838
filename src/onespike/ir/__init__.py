"""Graph IR of onespike: node dataclasses and the DAG container."""

from .graph import Graph
from .nodes import (
    AdaptiveAvgPoolNode,
    AvgPoolNode,
    BatchNormNode,
    ConvNode,
    FlattenNode,
    InputNode,
    LinearNode,
    MaxPoolNode,
    Node,
    OutputNode,
    ReLUNode,
)

__all__ = [
    "AdaptiveAvgPoolNode",
    "AvgPoolNode",
    "BatchNormNode",
    "ConvNode",
    "FlattenNode",
    "Graph",
    "InputNode",
    "LinearNode",
    "MaxPoolNode",
    "Node",
    "OutputNode",
    "ReLUNode",
]
