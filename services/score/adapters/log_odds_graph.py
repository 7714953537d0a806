"""A smaller graph for scores without reasons: the model's log-odds and probability alone.

The model file computes everything in one tree ensemble with a target per feature contribution,
one for the bias and one for the log-odds, then slices its output apart. A score without
reasons needs only the log-odds target. An ensemble holding just that target walks the same
trees with the same thresholds but adds one weight per leaf instead of several, which makes
large batches markedly faster (`make bench-score` measures it).

The smaller graph is derived from the model file when it is loaded, never stored, so there is
one model artifact. `onnx_model` checks on the warm-up rows that it gives the full graph's
log-odds exactly; a model of another shape (not one TreeEnsembleRegressor sliced into the
contract's outputs) simply gets no smaller graph and is served by the full one.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

from services.score.domain import model_contract

TREE_ENSEMBLE = "TreeEnsembleRegressor"
# Attributes that describe the targets; every other attribute (the trees) is kept as it is.
TARGET_ATTRIBUTES = frozenset(
    {
        "n_targets",
        "target_ids",
        "target_nodeids",
        "target_treeids",
        "target_weights",
        "target_weights_as_tensor",
        "base_values",
        "base_values_as_tensor",
    }
)


def log_odds_only(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The graph from the model's input to `probability_of_default` and `log_odds_of_default`
    alone, or None when the model is not shaped as expected."""
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    log_odds_slice = producers.get(model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT)
    if log_odds_slice is None or log_odds_slice.op_type != "Slice":
        return None
    cast = producers.get(log_odds_slice.input[0])
    if cast is None or cast.op_type != "Cast":
        return None
    ensemble = producers.get(cast.input[0])
    if ensemble is None or ensemble.op_type != TREE_ENSEMBLE:
        return None
    sigmoid = producers.get(model_contract.OUTPUT_PROBABILITY_OF_DEFAULT)
    if sigmoid is None or list(sigmoid.input) != [model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT]:
        return None
    target = _sliced_column(log_odds_slice, initializers)
    single_target = _single_target_ensemble(ensemble, target)
    if single_target is None:
        return None

    upstream = _nodes_feeding(ensemble, producers)
    log_odds = helper.make_node(
        "Cast",
        [single_target.output[0]],
        [model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT],
        to=TensorProto.DOUBLE,
    )
    nodes = [*upstream, single_target, log_odds, sigmoid]
    used = {name for node in nodes for name in node.input}
    kept_outputs = (
        model_contract.OUTPUT_PROBABILITY_OF_DEFAULT,
        model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT,
    )
    derived = helper.make_graph(
        nodes,
        f"{graph.name}-log-odds",
        list(graph.input),
        [value for value in graph.output if value.name in kept_outputs],
        [tensor for tensor in graph.initializer if tensor.name in used],
    )
    derived_model = helper.make_model(derived, opset_imports=list(model.opset_import))
    derived_model.ir_version = model.ir_version
    return derived_model


def _sliced_column(
    slice_node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]
) -> int | None:
    """The one column a Slice over axis 1 keeps, when its bounds are constants."""
    try:
        starts, ends, axes = (
            numpy_helper.to_array(initializers[name]).reshape(-1).tolist()
            for name in slice_node.input[1:4]
        )
    except (KeyError, ValueError):
        return None
    if axes != [1] or len(starts) != 1 or ends[0] - starts[0] != 1:
        return None
    column: int = starts[0]
    return column


def _single_target_ensemble(ensemble: onnx.NodeProto, target: int | None) -> onnx.NodeProto | None:
    attributes = {attribute.name: attribute for attribute in ensemble.attribute}
    if target is None or "target_weights_as_tensor" not in attributes:
        return None
    if "base_values" in attributes or "base_values_as_tensor" in attributes:
        return None  # the bias is a target of its own in the models this serves
    target_ids = list(attributes["target_ids"].ints)
    keep = [index for index, target_id in enumerate(target_ids) if target_id == target]
    if not keep:
        return None
    weights = numpy_helper.to_array(attributes["target_weights_as_tensor"].t)
    node = helper.make_node(
        TREE_ENSEMBLE,
        list(ensemble.input),
        [f"{ensemble.output[0]}_log_odds"],
        domain=ensemble.domain,
    )
    node.attribute.extend(
        attribute for name, attribute in attributes.items() if name not in TARGET_ATTRIBUTES
    )
    node.attribute.extend(
        [
            helper.make_attribute("n_targets", 1),
            helper.make_attribute("target_ids", [0] * len(keep)),
            helper.make_attribute(
                "target_nodeids", [attributes["target_nodeids"].ints[index] for index in keep]
            ),
            helper.make_attribute(
                "target_treeids", [attributes["target_treeids"].ints[index] for index in keep]
            ),
            helper.make_attribute(
                "target_weights_as_tensor",
                numpy_helper.from_array(weights[keep], "target_weights"),
            ),
        ]
    )
    return node


def _nodes_feeding(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto]
) -> list[onnx.NodeProto]:
    """Every node `node` depends on, in an order that computes each before it is used."""
    ordered: list[onnx.NodeProto] = []
    seen: set[int] = set()

    def visit(current: onnx.NodeProto) -> None:
        for name in current.input:
            producer = producers.get(name)
            if producer is not None and id(producer) not in seen:
                seen.add(id(producer))
                visit(producer)
                ordered.append(producer)

    visit(node)
    return ordered
