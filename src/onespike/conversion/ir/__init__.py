"""Graph IR of onespike: node dataclasses and the DAG container."""

from onespike.conversion.ir.graph import Graph
from onespike.conversion.ir.nodes import (
    AdaptiveAvgPoolNode,
    AddNode,
    AvgPoolNode,
    BatchNormNode,
    ClampNode,
    ConcatNode,
    ConvNode,
    FlattenNode,
    InputNode,
    LinearNode,
    MaxPoolNode,
    Node,
    OutputNode,
    PadNode,
    ReLUNode,
    ScaleNode,
    SliceNode,
)

__all__ = [
    "AdaptiveAvgPoolNode",
    "AddNode",
    "AvgPoolNode",
    "BatchNormNode",
    "ClampNode",
    "ConcatNode",
    "ConvNode",
    "FlattenNode",
    "Graph",
    "InputNode",
    "LinearNode",
    "MaxPoolNode",
    "Node",
    "OutputNode",
    "PadNode",
    "ReLUNode",
    "ScaleNode",
    "SliceNode",
]
