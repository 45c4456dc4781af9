"""Native ONNX emitters for the custom recurrent cells of ``models.cells`` (Clockwork RNN, SCRN), registered with
``export.registry.emits_cell``: a ``keras.layers.RNN`` over one of them, alone or under ``Bidirectional``,
becomes ONE ONNX ``Scan`` whose body is a handful of nodes.

Every cell here has the form ``new = where(select_t, f(state @ U + x_t W + b), state)``:

- everything that reads only the inputs (``x W + b`` for every step and direction, the clock schedule, the mask)
  is computed before the Scan, in a few batched ops over ``[time, directions, batch, ...]``;
- the body is ``MatMul`` → ``Add`` → activation → ``Where`` (→ ``Where`` for ``zero_output_for_mask``);
- both directions of a Bidirectional run in the same Scan, stacked on a directions axis (``U`` is ``[2, n, n]``);
  the backward direction reads the time-reversed inputs and mask, exactly as Keras' ``go_backwards`` does, so any
  mask is reproduced exactly (a masked step keeps the state, the clock counter included, and outputs the previous
  output, or zeros with ``zero_output_for_mask``).

Keras' exact order of operations differs in a few sums (``x W + b`` first), so outputs agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from onnx import TensorProto, helper

from export.registry import Call, Graph, UnsupportedLayer, emits_cell
from models.cells import ClockworkRNNCell, SCRNCell

_ACTIVATIONS = {"tanh": ("Tanh", {}), "sigmoid": ("Sigmoid", {}), "relu": ("Relu", {}), "linear": None,
                "softplus": ("Softplus", {}), "softsign": ("Softsign", {}),
                "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5})}
_I64 = np.int64


@dataclass
class _Plan:
    """One layer's Scan: stacked weights over directions and what the body selects with."""

    kernel: np.ndarray  # [D, features, units]: the input projection
    bias: np.ndarray  # [D, 1, units]
    recurrent: np.ndarray  # [D, units, units]: state → pre-activation
    activation: object  # the cell's activation (a Keras callable)
    only: np.ndarray | None = None  # bool [units]: the units the activation applies to (None: all)


def _act(g: Graph, layer, activation, z: str, hint: str) -> str:
    name = keras.activations.serialize(activation)
    if name not in _ACTIVATIONS:
        raise UnsupportedLayer(layer, f"activation {name!r}; supported: {', '.join(_ACTIVATIONS)}")
    if _ACTIVATIONS[name] is None:
        return z
    op_type, attrs = _ACTIVATIONS[name]
    return g.op(op_type, [z], hint, **attrs)


def _clockwork_plan(cell: ClockworkRNNCell) -> dict:
    kernel = np.asarray(cell.kernel, np.float32)
    bias = np.asarray(cell.bias, np.float32) if cell.use_bias else np.zeros(cell.units, np.float32)
    return {"kernel": kernel, "bias": bias[None], "recurrent": np.asarray(cell.recurrent_kernel, np.float32)}


def _scrn_plan(cell: SCRNCell) -> dict:
    """SCRN with the state [h, s] as one vector: ``z = [h, s] @ [[R, 0], [αP, αI]] + x [(1-α)BP + A, (1-α)B] + [b, 0]``,
    then the activation on the h units only."""
    a, hidden, context = np.float32(cell.alpha), cell.hidden_units, cell.context_units
    B = (np.float32(1) - a) * np.asarray(cell.context_kernel, np.float32)
    P = np.asarray(cell.context_to_hidden, np.float32)
    kernel = np.concatenate([B @ P + np.asarray(cell.kernel, np.float32), B], axis=1)
    recurrent = np.zeros((cell.units, cell.units), np.float32)
    recurrent[:hidden, :hidden] = np.asarray(cell.recurrent_kernel, np.float32)
    recurrent[hidden:, :hidden] = a * P
    recurrent[hidden:, hidden:] = a * np.eye(context, dtype=np.float32)
    bias = np.concatenate([np.asarray(cell.bias, np.float32), np.zeros(context, np.float32)])
    return {"kernel": kernel, "bias": bias[None], "recurrent": recurrent}


_PLANS = {ClockworkRNNCell: _clockwork_plan, SCRNCell: _scrn_plan}


def _directions(layer) -> tuple[list, str | None, bool]:
    """(the RNN layers, forward first; Bidirectional's merge mode; whether it is a Bidirectional)."""
    if isinstance(layer, keras.layers.Bidirectional):
        rnns = [layer.forward_layer, layer.backward_layer]
        if [r.go_backwards for r in rnns] != [False, True]:
            raise UnsupportedLayer(layer, "the forward layer goes backwards or the backward layer forwards")
        if type(rnns[0].cell) is not type(rnns[1].cell) or rnns[0].cell.get_config() | {"name": ""} != \
                rnns[1].cell.get_config() | {"name": ""}:
            raise UnsupportedLayer(layer, "forward and backward cells differ in class or options")
        return rnns, layer.merge_mode, True
    return [layer], None, False


def _plan(layer, rnns: list) -> _Plan:
    for rnn in rnns:
        if rnn.stateful:
            raise UnsupportedLayer(layer, "stateful=True (state carried across batches)")
    parts = [_PLANS[type(rnn.cell)](rnn.cell) for rnn in rnns]
    stack = {key: np.stack([p[key] for p in parts]) for key in parts[0]}
    cell = rnns[0].cell
    only = None
    if isinstance(cell, SCRNCell):
        only = np.arange(cell.units) < cell.hidden_units
    return _Plan(stack["kernel"], stack["bias"], stack["recurrent"], cell.activation, only)


def _reverse_time(g: Graph, x: str, hint: str) -> str:
    """``x`` reversed along axis 0 (all steps: padding then comes first, as in Keras' go_backwards)."""
    return g.op("Slice", [x, g.const([-1], f"{hint}_start", _I64), g.const([np.iinfo(_I64).min], f"{hint}_end", _I64),
                          g.const([0], f"{hint}_axis", _I64), g.const([-1], f"{hint}_step", _I64)], f"{hint}_reversed")


def _stack_directions(g: Graph, x: str, backwards: list[bool], hint: str) -> str:
    """[time, ...] → [time, directions, ...], time-reversed for the directions that go backwards."""
    parts = [g.unsqueeze(_reverse_time(g, x, hint) if back else x, [1], hint) for back in backwards]
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, hint, axis=1)


def _clock(g: Graph, cell: ClockworkRNNCell, mask: str | None, xw: str, hint: str) -> str:
    """bool [time, D, batch | 1, units]: which units update at each step. The counter counts real steps only."""
    if mask is None:
        time = g.op("Shape", [xw], hint, start=0, end=1)
        steps = g.op("Range", [g.const(np.float32(0), f"{hint}_zero"),
                               g.op("Cast", [g.squeeze(time, [0], hint)], hint, to=TensorProto.FLOAT),
                               g.const(np.float32(1), f"{hint}_one")], hint)
        counter = g.op("Reshape", [steps, g.const([-1, 1, 1, 1], f"{hint}_shape", _I64)], hint)
    else:
        real = g.op("Cast", [mask], hint, to=TensorProto.FLOAT)
        counter = g.op("CumSum", [real, g.const(np.int64(0), f"{hint}_axis", _I64)], hint, exclusive=1)
    periods = g.const(np.asarray(cell.unit_periods, np.float32), f"{hint}_periods")
    due = g.op("Equal", [g.op("Mod", [counter, periods], hint, fmod=1), g.const(np.float32(0), f"{hint}_zero")], hint)
    return due if mask is None else g.op("And", [due, mask], hint)


def _body(g: Graph, layer, plan: _Plan, recurrent: str, select: bool, zero_output: bool, hint: str):
    """The Scan body: state, x_t[, select_t][, mask_t] → new state, output."""
    b = g.subgraph()
    names = {k: b.fresh(f"{hint}_{k}") for k in ("state", "x", "select", "mask")}
    z = b.op("Add", [b.op("MatMul", [names["state"], recurrent], hint), names["x"]], hint)
    new = _act(b, layer, plan.activation, z, hint)
    if plan.only is not None and new != z:
        new = b.op("Where", [b.const(plan.only, f"{hint}_only"), new, z], hint)
    if select:
        new = b.op("Where", [names["select"], new, names["state"]], hint)
    out = (b.op("Where", [names["mask"], new, b.const(np.float32(0), f"{hint}_zero")], hint) if zero_output
           else b.op("Identity", [new], hint))
    float_in = [helper.make_tensor_value_info(names[k], TensorProto.FLOAT, None) for k in ("state", "x")]
    bool_in = [helper.make_tensor_value_info(names[k], TensorProto.BOOL, None)
               for k, used in (("select", select), ("mask", zero_output)) if used]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in (new, out)]
    return helper.make_graph(b.nodes, f"{hint}_step", float_in + bool_in, outputs, b.initializers)


def _initial_state(g: Graph, xw: str, hint: str) -> str:
    """zeros [D, batch, units], from xw [time, D, batch, units]."""
    shape = g.op("Shape", [xw], hint, start=1)
    return g.op("ConstantOfShape", [shape], hint, value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))


def _merge(g: Graph, parts: list[str], merge_mode: str | None, hint: str) -> list[str]:
    """Bidirectional's merge of [forward, backward] (already in input time order)."""
    if merge_mode is None:
        return parts
    if merge_mode == "concat":
        return [g.op("Concat", parts, hint, axis=-1)]
    if merge_mode == "ave":
        return [g.op("Mul", [g.op("Add", parts, hint), g.const(np.float32(0.5), f"{hint}_half")], hint)]
    return [g.op({"sum": "Add", "mul": "Mul"}[merge_mode], parts, hint)]


def _final_states(g: Graph, cell, state: str, mask: str | None, xw: str, d: int, hint: str) -> list[str]:
    """One direction's final states as Keras returns them: SCRN [state], Clockwork RNN [h, real steps]."""
    h = g.gather(state, d, 0, hint)
    if isinstance(cell, SCRNCell):
        return [h]
    if mask is None:  # every row ran every step
        ones = g.op("ConstantOfShape", [g.op("Shape", [xw], hint, start=2, end=3)], hint,
                    value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))
        time = g.op("Cast", [g.op("Shape", [xw], hint, start=0, end=1)], hint, to=TensorProto.FLOAT)
        return [h, g.unsqueeze(g.op("Mul", [ones, time], hint), [1], hint)]
    steps = g.reduce("ReduceSum", g.op("Cast", [mask], hint, to=TensorProto.FLOAT), [0], hint)  # [D, batch, 1]
    return [h, g.gather(steps, d, 0, hint)]


@emits_cell(ClockworkRNNCell, SCRNCell)
def _custom_cell(g: Graph, layer, call: Call):
    """An RNN (or Bidirectional) over a Clockwork RNN or SCRN cell: one Scan over the stacked directions."""
    rnns, merge_mode, bidirectional = _directions(layer)
    rnn, cell, hint = rnns[0], rnns[0].cell, layer.name
    x = call.args["sequences"]
    if len(x.shape) != 3:
        raise UnsupportedLayer(layer, f"input of rank {len(x.shape)}; expected [batch, time, features]")
    if call.args.get("initial_state") is not None:
        raise UnsupportedLayer(layer, "initial_state (the cells start from zeros here)")
    plan = _plan(layer, rnns)
    n_dir, backwards = len(rnns), [r.go_backwards for r in rnns]
    xs = _stack_directions(g, g.op("Transpose", [x.name], f"{hint}_time_major", perm=[1, 0, 2]), backwards, hint)
    xw = g.op("Add", [g.op("MatMul", [xs, g.const(plan.kernel, f"{hint}_kernel")], hint),
                      g.const(plan.bias, f"{hint}_bias")], hint)  # [time, D, batch, units]
    mask = None
    if call.mask is not None:  # bool [time, D, batch, 1]
        steps = g.op("Transpose", [g.time_mask(x.name, call.mask, hint)], hint, perm=[1, 0])
        mask = g.unsqueeze(_stack_directions(g, steps, backwards, f"{hint}_mask"), [3], hint)
    select = _clock(g, cell, mask, xw, hint) if isinstance(cell, ClockworkRNNCell) else mask
    zero_output = bool(rnn.zero_output_for_mask and mask is not None)
    recurrent = g.const(plan.recurrent, f"{hint}_recurrent")
    body = _body(g, layer, plan, recurrent, select is not None, zero_output, hint)
    scanned = [xw] + [t for t in (select, mask if zero_output else None) if t is not None]
    state, ys = g.op("Scan", [_initial_state(g, xw, hint)] + scanned, hint, n_out=2, body=body,
                     num_scan_inputs=len(scanned))
    if rnn.return_sequences:  # ys [time, D, batch, units] in scan order (a lone go_backwards layer returns that)
        parts = [g.gather(ys, d, 1, hint) for d in range(n_dir)]
        if bidirectional:
            parts[1] = _reverse_time(g, parts[1], f"{hint}_backward")
        outputs = [(g.op("Transpose", [y], hint, perm=[1, 0, 2]), x.lens) for y in _merge(g, parts, merge_mode, hint)]
    else:  # Keras' last output: the output of the last step in scan order
        last = g.gather(ys, -1, 0, hint)
        outputs = [(y, None) for y in _merge(g, [g.gather(last, d, 0, hint) for d in range(n_dir)], merge_mode, hint)]
    if rnn.return_state:
        for d in range(n_dir):
            outputs += [(s, None) for s in _final_states(g, cell, state, mask, xw, d, hint)]
    return outputs
