"""A LightGBM binary model as an ONNX graph that also explains itself, exactly.

The graph is built here from `Booster.dump_model()` rather than by a general converter, for
three reasons:

* thresholds stay float64 (`nodes_values_as_tensor`, with a float64 input), so a row exactly
  at a split threshold goes the way LightGBM sends it; a float32 threshold is rounded and sends
  such rows the other way;
* one `TreeEnsembleRegressor` node yields, next to the log-odds, one target per feature holding
  that feature's path attribution (Saabas), precomputed per leaf, so the explanation comes from
  the same pass over the same trees as the score;
* the bytes are a function of the booster alone (no producer timestamps, sorted entries), so the
  same training run gives the same file.

Attributions. A node's expected value is the mean of its leaves' values weighted by how many
training rows reached each leaf (what LightGBM's own SHAP values use as a node's expectation), so
the root's is the tree's average output. Walking a row's path, every split hands the change in
expected value from the node to the child taken to the split's feature; the root's value is the
tree's bias. Per leaf this is a fixed vector, so it is precomputed and stored as the leaf's
weights. The expected values are recomputed here in float64 from the leaves rather than read from
the dump's `internal_value`, which LightGBM prints with six significant digits only.

The reference point. Contributions measured from the trees' average output say how a row
differs from an average row, a point nobody chose. Given the contributions of a reference
profile, the graph subtracts them from every row's and adds their sum to the bias: each
contribution then says how much the feature moved the log-odds away from the reference's (as a
scorecard counts points below a reference), and the bias is the reference's log-odds.

Targets of the tree node: 0 .. F-1 the feature contributions, F the bias, F+1 the log-odds (each
tree's leaf value, independently of the attributions, so the identity
bias + sum(contributions) == log-odds is a real check, not a tautology).

LightGBM semantics kept:

* a numerical split sends a row left when `value <= threshold` (`decision_type` "<=", mapped to
  BRANCH_LEQ with the left child as the true branch);
* LightGBM reads any input with |value| <= 1e-35 (its `kZeroThreshold`, a float32 constant) as
  exactly 0, and splits near zero are placed at +-1e-35, so the graph zeroes such inputs first;
* a split whose `missing_type` is "None" (a split on a feature that had no missing value in
  training) treats a NaN as 0: the node sends a NaN the way it sends 0;
* a split whose `missing_type` is "NaN" (a feature that had missing values in training, such as
  the credit line when it was withheld) sends a NaN the way it learnt (`default_left`).

Both are the node's `missing_value_tracks_true`. Any other split kind (categorical, zero read as
missing) is refused, not approximated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from services.score.domain import model_contract

ONNX_OPSET = 17
ONNX_ML_OPSET = 3
# IR version 8 is the oldest that carries opset 17; older runtimes can still load the file.
IR_VERSION = 8
PRODUCER_NAME = "sesame-score-training"
# LightGBM's kZeroThreshold (1e-35f, a float32 constant) as the float64 it compares with.
LIGHTGBM_ZERO_THRESHOLD = float(np.float32(1e-35))
# The deepest tree LightGBM can grow with the leaf counts used here is far shallower; the bound
# only keeps a malformed dump from recursing without end.
TREE_DEPTH_MAX = 64


class UnsupportedModelError(ValueError):
    """The booster uses a feature of LightGBM the exporter does not reproduce exactly."""


@dataclass
class _Node:
    node_id: int
    feature: int = 0
    threshold: float = 0.0
    is_leaf: bool = False
    true_id: int = 0
    false_id: int = 0
    # Whether a NaN takes the true (left) branch.
    missing_tracks_true: bool = False


@dataclass
class _Tree:
    nodes: list[_Node] = field(default_factory=list)
    # (leaf node id, target id, weight), for every target a leaf adds to.
    targets: list[tuple[int, int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class TreeSplit:
    """One split of the model, for the threshold parity check."""

    feature: int
    threshold: float


@dataclass(frozen=True)
class ExportedModel:
    """The serialised graph and what the exporter learnt about the trees on the way."""

    onnx_bytes: bytes
    splits: tuple[TreeSplit, ...]
    tree_count: int
    leaf_count: int


def export_booster(
    dump: Mapping[str, Any],
    feature_names: Sequence[str],
    *,
    model_version: str,
    description: str,
    reference_contributions: Sequence[float] | None = None,
) -> ExportedModel:
    """The ONNX graph of a dumped LightGBM binary model (see the module docstring).

    `reference_contributions`: each feature's contribution at the reference profile (see
    "The reference point" above); the graph's contributions are then measured from it, and its
    bias is the reference's log-odds. None measures them from the trees' average output."""
    _check_dump(dump, feature_names)
    feature_count = len(feature_names)
    reference = np.zeros(feature_count)
    if reference_contributions is not None:
        reference = np.asarray(reference_contributions, dtype=np.float64)
        if reference.shape != (feature_count,) or not np.isfinite(reference).all():
            raise ValueError(f"expected {feature_count} finite reference contributions")
    trees: list[_Tree] = []
    splits: list[TreeSplit] = []
    for tree_info in dump["tree_info"]:
        tree = _Tree()
        root = tree_info["tree_structure"]
        expected_values: dict[int, float] = {}
        _expected_value(root, expected_values, depth=0)
        bias = expected_values[id(root)]
        _add_subtree(tree, root, expected_values, bias, np.zeros(feature_count), splits, depth=0)
        trees.append(tree)
    graph = _graph(trees, feature_count, description, reference)
    metadata = {
        model_contract.METADATA_CONTRACT: model_contract.CONTRACT_VERSION,
        model_contract.METADATA_FEATURE_NAMES: json.dumps(list(feature_names)),
        model_contract.METADATA_MODEL_VERSION: model_version,
    }
    model = helper.make_model(
        graph,
        ir_version=IR_VERSION,
        opset_imports=[
            helper.make_opsetid("", ONNX_OPSET),
            helper.make_opsetid("ai.onnx.ml", ONNX_ML_OPSET),
        ],
        producer_name=PRODUCER_NAME,
        producer_version=model_version,
        model_version=_model_version_number(model_version),
        doc_string=description,
    )
    for key in sorted(metadata):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, metadata[key]
    onnx.checker.check_model(model, full_check=True)
    return ExportedModel(
        onnx_bytes=model.SerializeToString(deterministic=True),
        splits=tuple(sorted(set(splits), key=lambda split: (split.feature, split.threshold))),
        tree_count=len(trees),
        leaf_count=sum(sum(1 for node in tree.nodes if node.is_leaf) for tree in trees),
    )


def _check_dump(dump: Mapping[str, Any], feature_names: Sequence[str]) -> None:
    if dump.get("num_class") != 1 or dump.get("num_tree_per_iteration") != 1:
        raise UnsupportedModelError("only binary models with one tree per iteration are exported")
    objective = str(dump.get("objective", ""))
    if not objective.startswith("binary") or "sigmoid:1" not in objective.replace(" ", ":"):
        raise UnsupportedModelError(
            f"expected the binary objective with sigmoid 1, got {objective}"
        )
    if dump.get("average_output"):
        raise UnsupportedModelError("averaged outputs (random forest mode) are not exported")
    if list(dump.get("feature_names", [])) != list(feature_names):
        raise UnsupportedModelError("the booster's feature names differ from the feature order")


def _expected_value(
    node: Mapping[str, Any], expected_values: dict[int, float], depth: int
) -> tuple[float, float]:
    """Fills `expected_values` (keyed by the node's id()) for the subtree; returns the subtree's
    training row count and count-weighted sum of leaf values."""
    if depth > TREE_DEPTH_MAX:
        raise UnsupportedModelError(f"a tree is deeper than {TREE_DEPTH_MAX}")
    if "leaf_value" in node:
        value = float(node["leaf_value"])
        count = float(node.get("leaf_count", 0))
        expected_values[id(node)] = value
        return count, count * value
    left_count, left_sum = _expected_value(node["left_child"], expected_values, depth + 1)
    right_count, right_sum = _expected_value(node["right_child"], expected_values, depth + 1)
    count, weighted_sum = left_count + right_count, left_sum + right_sum
    # A subtree no training row reached cannot be averaged; LightGBM's own value stands in.
    expected_values[id(node)] = weighted_sum / count if count > 0 else float(node["internal_value"])
    return count, weighted_sum


def _add_subtree(
    tree: _Tree,
    node: Mapping[str, Any],
    expected_values: Mapping[int, float],
    bias: float,
    path_contributions: np.ndarray,
    splits: list[TreeSplit],
    depth: int,
) -> int:
    """Adds `node` and its descendants in preorder; returns the node's id within the tree."""
    if depth > TREE_DEPTH_MAX:
        raise UnsupportedModelError(f"a tree is deeper than {TREE_DEPTH_MAX}")
    feature_count = len(path_contributions)
    node_id = len(tree.nodes)
    if "leaf_value" in node:
        tree.nodes.append(_Node(node_id=node_id, is_leaf=True))
        for feature in range(feature_count):
            if path_contributions[feature] != 0.0:
                tree.targets.append((node_id, feature, float(path_contributions[feature])))
        tree.targets.append((node_id, feature_count, bias))
        tree.targets.append((node_id, feature_count + 1, float(node["leaf_value"])))
        return node_id
    _check_split(node)
    feature = int(node["split_feature"])
    threshold = float(node["threshold"])
    splits.append(TreeSplit(feature, threshold))
    split = _Node(
        node_id=node_id,
        feature=feature,
        threshold=threshold,
        missing_tracks_true=_missing_goes_left(node, threshold),
    )
    tree.nodes.append(split)
    parent_value = expected_values[id(node)]
    for child_key in ("left_child", "right_child"):
        child = node[child_key]
        child_contributions = path_contributions.copy()
        child_contributions[feature] += expected_values[id(child)] - parent_value
        child_id = _add_subtree(
            tree, child, expected_values, bias, child_contributions, splits, depth + 1
        )
        if child_key == "left_child":
            split.true_id = child_id
        else:
            split.false_id = child_id
    return node_id


def _check_split(node: Mapping[str, Any]) -> None:
    if node.get("decision_type") != "<=":
        raise UnsupportedModelError(f"unsupported decision type {node.get('decision_type')!r}")
    if node.get("missing_type") not in ("None", "NaN"):
        raise UnsupportedModelError(
            f"a split reads zero as missing ({node.get('missing_type')!r}); only NaN may be"
        )


def _missing_goes_left(node: Mapping[str, Any], threshold: float) -> bool:
    """Where LightGBM sends a NaN at this split: as 0 when the feature had no missing value in
    training, else the way the split learnt."""
    if node["missing_type"] == "None":
        return threshold >= 0.0
    return bool(node["default_left"])


def _graph(
    trees: Sequence[_Tree],
    feature_count: int,
    description: str,
    reference: NDArray[np.float64],
) -> onnx.GraphProto:
    target_count = feature_count + 2
    ensemble = _tree_ensemble_node(trees, target_count)
    constants = {
        # Contributions are measured from the reference profile's: the tree's path
        # attributions minus the reference's, and the bias plus their sum, so that
        # bias + sum(contributions) is still the log-odds.
        "reference_contributions": -reference.reshape(1, feature_count),
        "reference_shift": np.array([[float(reference.sum())]], dtype=np.float64),
        "zero": np.array(0.0, dtype=np.float64),
        "zero_threshold": np.array(LIGHTGBM_ZERO_THRESHOLD, dtype=np.float64),
        "contributions_start": np.array([0], dtype=np.int64),
        "contributions_end": np.array([feature_count], dtype=np.int64),
        "bias_end": np.array([feature_count + 1], dtype=np.int64),
        "log_odds_end": np.array([feature_count + 2], dtype=np.int64),
        "column_axis": np.array([1], dtype=np.int64),
    }
    initializers = [numpy_helper.from_array(value, name) for name, value in constants.items()]
    nodes = [
        # A NaN is not <= anything, so it passes through to the trees, which route it.
        helper.make_node("Abs", [model_contract.INPUT_FEATURES], ["magnitude"]),
        helper.make_node("LessOrEqual", ["magnitude", "zero_threshold"], ["reads_as_zero"]),
        helper.make_node(
            "Where", ["reads_as_zero", "zero", model_contract.INPUT_FEATURES], ["tree_input"]
        ),
        ensemble,
        helper.make_node("Cast", ["tree_output_float"], ["tree_output"], to=TensorProto.DOUBLE),
        helper.make_node(
            "Slice",
            ["tree_output", "contributions_start", "contributions_end", "column_axis"],
            ["path_contributions"],
        ),
        helper.make_node(
            "Add",
            ["path_contributions", "reference_contributions"],
            [model_contract.OUTPUT_CONTRIBUTIONS],
        ),
        helper.make_node(
            "Slice",
            ["tree_output", "contributions_end", "bias_end", "column_axis"],
            ["trees_bias"],
        ),
        helper.make_node("Add", ["trees_bias", "reference_shift"], [model_contract.OUTPUT_BIAS]),
        helper.make_node(
            "Slice",
            ["tree_output", "bias_end", "log_odds_end", "column_axis"],
            [model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT],
        ),
        helper.make_node(
            "Sigmoid",
            [model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT],
            [model_contract.OUTPUT_PROBABILITY_OF_DEFAULT],
        ),
    ]
    row_count = "row_count"
    inputs = [
        helper.make_tensor_value_info(
            model_contract.INPUT_FEATURES, TensorProto.DOUBLE, [row_count, feature_count]
        )
    ]
    outputs = [
        helper.make_tensor_value_info(
            model_contract.OUTPUT_PROBABILITY_OF_DEFAULT, TensorProto.DOUBLE, [row_count, 1]
        ),
        helper.make_tensor_value_info(
            model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT, TensorProto.DOUBLE, [row_count, 1]
        ),
        helper.make_tensor_value_info(
            model_contract.OUTPUT_CONTRIBUTIONS, TensorProto.DOUBLE, [row_count, feature_count]
        ),
        helper.make_tensor_value_info(
            model_contract.OUTPUT_BIAS, TensorProto.DOUBLE, [row_count, 1]
        ),
    ]
    return helper.make_graph(
        nodes, "sesame_score", inputs, outputs, initializer=initializers, doc_string=description
    )


def _tree_ensemble_node(trees: Sequence[_Tree], target_count: int) -> onnx.NodeProto:
    nodes_treeids: list[int] = []
    nodes_nodeids: list[int] = []
    nodes_featureids: list[int] = []
    nodes_modes: list[str] = []
    nodes_values: list[float] = []
    nodes_truenodeids: list[int] = []
    nodes_falsenodeids: list[int] = []
    nodes_missing_value_tracks_true: list[int] = []
    target_treeids: list[int] = []
    target_nodeids: list[int] = []
    target_ids: list[int] = []
    target_weights: list[float] = []
    for tree_id, tree in enumerate(trees):
        for node in tree.nodes:
            nodes_treeids.append(tree_id)
            nodes_nodeids.append(node.node_id)
            nodes_featureids.append(node.feature)
            nodes_modes.append("LEAF" if node.is_leaf else "BRANCH_LEQ")
            nodes_values.append(node.threshold)
            nodes_truenodeids.append(node.true_id)
            nodes_falsenodeids.append(node.false_id)
            nodes_missing_value_tracks_true.append(int(node.missing_tracks_true))
        for node_id, target_id, weight in sorted(tree.targets):
            target_treeids.append(tree_id)
            target_nodeids.append(node_id)
            target_ids.append(target_id)
            target_weights.append(weight)
    return helper.make_node(
        "TreeEnsembleRegressor",
        ["tree_input"],
        ["tree_output_float"],
        domain="ai.onnx.ml",
        n_targets=target_count,
        aggregate_function="SUM",
        post_transform="NONE",
        nodes_treeids=nodes_treeids,
        nodes_nodeids=nodes_nodeids,
        nodes_featureids=nodes_featureids,
        nodes_modes=nodes_modes,
        nodes_values_as_tensor=numpy_helper.from_array(
            np.array(nodes_values, dtype=np.float64), "nodes_values"
        ),
        nodes_truenodeids=nodes_truenodeids,
        nodes_falsenodeids=nodes_falsenodeids,
        nodes_missing_value_tracks_true=nodes_missing_value_tracks_true,
        target_treeids=target_treeids,
        target_nodeids=target_nodeids,
        target_ids=target_ids,
        target_weights_as_tensor=numpy_helper.from_array(
            np.array(target_weights, dtype=np.float64), "target_weights"
        ),
    )


def _model_version_number(model_version: str) -> int:
    # ModelProto.model_version is one integer: the dotted version packed three digits a part.
    number = 0
    for part in model_contract.version_key(model_version):
        number = number * 1000 + part
    return number
