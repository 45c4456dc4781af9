"""Native ONNX emitters for the custom recurrent cells (``models.cells``: Clockwork RNN, SCRN; ``models.ntm``: the
Neural Turing Machine), registered with ``export.registry.emits_cell``: a ``keras.layers.RNN`` over one of them,
alone or under ``Bidirectional``, becomes ONE ONNX ``Scan``.

The NTM's body is one step of its controller, heads and memory (about 100 nodes; the controller's input projection
is computed before the Scan). The Clockwork RNN and SCRN have the form
``new = where(select_t, f(state @ U + x_t W + b), state)``:

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
from models.ntm import MEMORY_INIT, NTMCell

_I64 = np.int64


@dataclass
class _Plan:
    """One layer's Scan: stacked weights over directions and what the body selects with."""

    kernel: np.ndarray  # [D, features, units]: the input projection
    bias: np.ndarray  # [D, 1, units]
    recurrent: np.ndarray  # [D, units, units]: state → pre-activation
    activation: object  # the cell's activation (a Keras callable)
    only: np.ndarray | None = None  # bool [units]: the units the activation applies to (None: all)


def _clockwork_plan(cell: ClockworkRNNCell) -> dict:
    kernel = np.asarray(cell.kernel, np.float32)
    bias = np.asarray(cell.bias, np.float32) if cell.use_bias else np.zeros(cell.units, np.float32)
    return {"kernel": kernel, "bias": bias[None], "recurrent": np.asarray(cell.recurrent_kernel, np.float32)}


def _scrn_plan(cell: SCRNCell) -> dict:
    """SCRN with the state [h, s] as one vector:
    ``z = [h, s] @ [[R, 0], [αP, αI]] + x [(1-α)BP + A, (1-α)B] + [b, 0]``,
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
    new = b.activation(layer, plan.activation, z, hint)
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


@dataclass
class _Run:
    """What every emitter here reads from the layer call: the RNN layers, the time-major stacked inputs, the mask."""

    rnns: list
    merge_mode: str | None
    bidirectional: bool
    x: object  # the input Value [batch, time, features]
    xs: str  # [time, D, batch, features], time-reversed for the directions that go backwards
    mask: str | None  # bool [time, D, batch, 1], likewise


def _prepare(g: Graph, layer, call: Call) -> _Run:
    rnns, merge_mode, bidirectional = _directions(layer)
    x, hint = call.args["sequences"], layer.name
    if len(x.shape) != 3:
        raise UnsupportedLayer(layer, f"input of rank {len(x.shape)}; expected [batch, time, features]")
    if call.args.get("initial_state") is not None:
        raise UnsupportedLayer(layer, "initial_state (the cells start from their own initial state here)")
    for rnn in rnns:
        if rnn.stateful:
            raise UnsupportedLayer(layer, "stateful=True (state carried across batches)")
    backwards = [r.go_backwards for r in rnns]
    xs = _stack_directions(g, g.op("Transpose", [x.name], f"{hint}_time_major", perm=[1, 0, 2]), backwards, hint)
    mask = None
    if call.mask is not None:
        steps = g.op("Transpose", [g.time_mask(x.name, call.mask, hint)], hint, perm=[1, 0])
        mask = g.unsqueeze(_stack_directions(g, steps, backwards, f"{hint}_mask"), [3], hint)
    return _Run(rnns, merge_mode, bidirectional, x, xs, mask)


def _sequence_outputs(g: Graph, run: _Run, ys: str, hint: str) -> list:
    """The layer's output(s) from the Scan's per-step outputs ys [time, D, batch, units] (in scan order)."""
    n_dir = len(run.rnns)
    if run.rnns[0].return_sequences:  # a lone go_backwards layer returns the scan order; Bidirectional flips back
        parts = [g.gather(ys, d, 1, hint) for d in range(n_dir)]
        if run.bidirectional:
            parts[1] = _reverse_time(g, parts[1], f"{hint}_backward")
        return [(g.op("Transpose", [y], hint, perm=[1, 0, 2]), run.x.lens) for y in _merge(g, parts, run.merge_mode,
                                                                                           hint)]
    last = g.gather(ys, -1, 0, hint)  # Keras' last output: the output of the last step in scan order
    return [(y, None) for y in _merge(g, [g.gather(last, d, 0, hint) for d in range(n_dir)], run.merge_mode, hint)]


@emits_cell(ClockworkRNNCell, SCRNCell)
def _custom_cell(g: Graph, layer, call: Call):
    """An RNN (or Bidirectional) over a Clockwork RNN or SCRN cell: one Scan over the stacked directions."""
    run = _prepare(g, layer, call)
    rnn, cell, hint, mask = run.rnns[0], run.rnns[0].cell, layer.name, run.mask
    plan = _plan(layer, run.rnns)
    xw = g.op("Add", [g.op("MatMul", [run.xs, g.const(plan.kernel, f"{hint}_kernel")], hint),
                      g.const(plan.bias, f"{hint}_bias")], hint)  # [time, D, batch, units]
    select = _clock(g, cell, mask, xw, hint) if isinstance(cell, ClockworkRNNCell) else mask
    zero_output = bool(rnn.zero_output_for_mask and mask is not None)
    recurrent = g.const(plan.recurrent, f"{hint}_recurrent")
    body = _body(g, layer, plan, recurrent, select is not None, zero_output, hint)
    scanned = [xw] + [t for t in (select, mask if zero_output else None) if t is not None]
    state, ys = g.op("Scan", [_initial_state(g, xw, hint)] + scanned, hint, n_out=2, body=body,
                     num_scan_inputs=len(scanned))
    outputs = _sequence_outputs(g, run, ys, hint)
    if rnn.return_state:
        for d in range(len(run.rnns)):
            outputs += [(s, None) for s in _final_states(g, cell, state, mask, xw, d, hint)]
    return outputs


# --------------------------------------------------------------------------------------------------------------------
# The Neural Turing Machine (models.ntm.NTMCell): one Scan, its body one step of controller, heads and memory


def _split(b: Graph, x: str, sizes: list[int], hint: str) -> list[str]:
    return b.op("Split", [x, b.const(sizes, f"{hint}_sizes", _I64)], hint, n_out=len(sizes), axis=-1)


def _head(b: Graph, parts: list[str], hint: str) -> tuple:
    """(key, beta, gate, shifts, gamma[, erase, add]) squashed as ``NTMCell.head_parameters`` does."""
    key, beta, gate, shifts, gamma, *rest = parts
    one = b.const(np.float32(1), f"{hint}_one")
    squashed = (b.op("Tanh", [key], hint), b.op("Softplus", [beta], hint), b.op("Sigmoid", [gate], hint),
                b.op("Softmax", [shifts], hint, axis=-1), b.op("Add", [one, b.op("Softplus", [gamma], hint)], hint))
    if rest:
        squashed += (b.op("Sigmoid", [rest[0]], hint), b.op("Tanh", [rest[1]], hint))
    return squashed


def _address(b: Graph, cell, memory: str, previous: str, head: tuple, hint: str) -> str:
    """``models.ntm.address``: content, interpolation, circular shift, sharpening; [D, batch, N]."""
    key, beta, gate, shifts, gamma = head[:5]
    eps = b.const(np.float32(1e-8), f"{hint}_eps")
    dot = b.reduce("ReduceSum", b.op("Mul", [memory, b.unsqueeze(key, [2], hint)], hint), [-1], hint)
    memory_norm = b.op("Sqrt", [b.op("Add", [b.reduce("ReduceSum", b.op("Mul", [memory, memory], hint), [-1], hint),
                                             eps], hint)], hint)
    key_norm = b.op("Sqrt", [b.op("Add", [b.reduce("ReduceSum", b.op("Mul", [key, key], hint), [-1], hint,
                                                   keepdims=1), eps], hint)], hint)
    scores = b.op("Div", [b.op("Mul", [beta, dot], hint), b.op("Mul", [memory_norm, key_norm], hint)], hint)
    content = b.op("Softmax", [scores], hint, axis=-1)
    one = b.const(np.float32(1), f"{hint}_one")
    w = b.op("Add", [b.op("Mul", [gate, content], hint),
                     b.op("Mul", [b.op("Sub", [one, gate], hint), previous], hint)], hint)
    n, radius = cell.memory_size, cell.shift_range
    rolled = np.stack([(np.arange(n) - k) % n for k in range(-radius, radius + 1)])  # roll(w, k)[i] = w[i - k]
    stacked = b.op("Gather", [w, b.const(rolled, f"{hint}_rolls", _I64)], hint, axis=2)  # [D, batch, 2S+1, N]
    w = b.reduce("ReduceSum", b.op("Mul", [stacked, b.unsqueeze(shifts, [3], hint)], hint), [2], hint)
    powered = b.op("Pow", [b.op("Add", [w, eps], hint), gamma], hint)
    return b.op("Div", [powered, b.reduce("ReduceSum", powered, [-1], hint, keepdims=1)], hint)


def _ntm_step(b: Graph, cell, weights: dict, states: list[str], xw: str, hint: str) -> list[str]:
    """One NTMCell step: (h, c, memory [D, batch, N, M], w_read, w_write, read) → new states, then the output."""
    h, c, memory, w_read, w_write, read = states
    units, m = cell.controller_units, cell.memory_width
    z = b.op("Add", [xw, b.op("MatMul", [b.op("Concat", [read, h], hint, axis=-1), weights["recurrent"]], hint)], hint)
    i, f, g_, o = _split(b, z, [units] * 4, f"{hint}_gates")
    c = b.op("Add", [b.op("Mul", [b.op("Sigmoid", [f], hint), c], hint),
                     b.op("Mul", [b.op("Sigmoid", [i], hint), b.op("Tanh", [g_], hint)], hint)], hint)
    h = b.op("Mul", [b.op("Sigmoid", [o], hint), b.op("Tanh", [c], hint)], hint)
    params = b.op("Add", [b.op("MatMul", [h, weights["heads"]], hint), weights["heads_bias"]], hint)
    width = 2 * cell.shift_range + 1
    parts = _split(b, params, [m, 1, 1, width, 1, m, m] + [m, 1, 1, width, 1], f"{hint}_heads")
    write_head, read_head = _head(b, parts[:7], f"{hint}_write"), _head(b, parts[7:], f"{hint}_read")
    w_write = _address(b, cell, memory, w_write, write_head, f"{hint}_write")
    ww, erase, add = b.unsqueeze(w_write, [3], hint), b.unsqueeze(write_head[5], [2], hint), b.unsqueeze(
        write_head[6], [2], hint)
    one = b.const(np.float32(1), f"{hint}_one")
    memory = b.op("Add", [b.op("Mul", [memory, b.op("Sub", [one, b.op("Mul", [ww, erase], hint)], hint)], hint),
                          b.op("Mul", [ww, add], hint)], hint)
    w_read = _address(b, cell, memory, w_read, read_head, f"{hint}_read")
    read = b.reduce("ReduceSum", b.op("Mul", [memory, b.unsqueeze(w_read, [3], hint)], hint), [2], hint)
    return [h, c, memory, w_read, w_write, read]


def _ntm_body(g: Graph, cell, weights: dict, masked: bool, zero_output: bool, hint: str):
    """Scan body: 6 states (+ the previous output when a masked step must repeat it), x_t[, mask_t]."""
    b = g.subgraph()
    names = [b.fresh(f"{hint}_{k}") for k in ("h", "c", "memory", "w_read", "w_write", "read", "prev", "x", "mask")]
    states, prev, x, mask = names[:6], names[6], names[7], names[8]
    new = _ntm_step(b, cell, weights, states, x, hint)
    if masked:
        mask4 = b.unsqueeze(mask, [3], hint)
        new = [b.op("Where", [mask4 if k == 2 else mask, s, old], hint) for k, (s, old) in enumerate(zip(new, states))]
    h, c, memory, w_read, w_write, read = new
    out = b.op("Concat", [h, read, w_read, w_write], hint, axis=-1)
    if masked:
        out = b.op("Where", [mask, out, b.const(np.float32(0), f"{hint}_zero") if zero_output else prev], hint)
    carry = masked and not zero_output
    outputs = new + ([b.op("Identity", [out], hint)] if carry else []) + [b.op("Identity", [out], hint)]
    inputs = states + ([prev] if carry else []) + [x] + ([mask] if masked else [])
    info = [helper.make_tensor_value_info(n, TensorProto.BOOL if n == mask else TensorProto.FLOAT, None)
            for n in inputs]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs]
    return helper.make_graph(b.nodes, f"{hint}_step", info, outs, b.initializers), carry


def _ntm_weights(g: Graph, cells: list, hint: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(input kernel [D, F, 4C], bias [D, 1, 4C], the body's weights stacked over directions)."""
    def stack(fn):
        return np.stack([fn(cell) for cell in cells]).astype(np.float32)

    features = cells[0].controller.kernel.shape[0] - cells[0].memory_width
    kernel = stack(lambda c: np.asarray(c.controller.kernel)[:features])
    bias = stack(lambda c: np.asarray(c.controller.bias)[None])
    recurrent = stack(lambda c: np.concatenate([np.asarray(c.controller.kernel)[features:],
                                                np.asarray(c.controller.recurrent_kernel)]))
    heads = stack(lambda c: np.concatenate([np.asarray(c.write_head.kernel), np.asarray(c.read_head.kernel)], 1))
    heads_bias = stack(lambda c: np.concatenate([np.asarray(c.write_head.bias), np.asarray(c.read_head.bias)])[None])
    body = {"recurrent": recurrent, "heads": heads, "heads_bias": heads_bias}
    return kernel, bias, {k: g.const(v, f"{hint}_{k}") for k, v in body.items()}


def _ntm_initial(g: Graph, cell, n_dir: int, xs: str, hint: str) -> list[str]:
    """``NTMCell.get_initial_state`` for every direction: [D, batch, ...] each."""
    n, m, c = cell.memory_size, cell.memory_width, cell.controller_units
    focus = np.eye(1, n, dtype=np.float32)[0]
    values = [np.zeros(c), np.zeros(c), np.full((n, m), MEMORY_INIT), focus, focus, np.zeros(m)]
    batch = g.op("Shape", [xs], hint, start=2, end=3)
    states = []
    for value in values:
        value = np.asarray(value, np.float32)
        shape = g.op("Concat", [g.const([n_dir], f"{hint}_d", _I64), batch, g.const(value.shape, f"{hint}_dims", _I64)],
                     hint, axis=0)
        states.append(g.op("Expand", [g.const(value[None, None], f"{hint}_initial"), shape], hint))
    return states


@emits_cell(NTMCell)
def _ntm(g: Graph, layer, call: Call):
    """An RNN (or Bidirectional) over an NTMCell: one Scan; the input projection of the controller is computed first."""
    run = _prepare(g, layer, call)
    rnn, cell, hint = run.rnns[0], run.rnns[0].cell, layer.name
    if rnn.return_state:
        raise UnsupportedLayer(layer, "return_state on an NTM")
    if keras.activations.serialize(cell.controller.activation) != "tanh" or keras.activations.serialize(
            cell.controller.recurrent_activation) != "sigmoid" or not cell.controller.use_bias:
        raise UnsupportedLayer(layer, "a controller other than LSTMCell(tanh, sigmoid, use_bias)")
    kernel, bias, weights = _ntm_weights(g, [r.cell for r in run.rnns], hint)
    xw = g.op("Add", [g.op("MatMul", [run.xs, g.const(kernel, f"{hint}_kernel")], hint), g.const(bias, f"{hint}_bias")],
              hint)
    masked = run.mask is not None
    body, carry = _ntm_body(g, cell, weights, masked, bool(rnn.zero_output_for_mask), hint)
    initial = _ntm_initial(g, cell, len(run.rnns), run.xs, hint)
    if carry:  # the previous output starts as zeros [D, batch, output]
        initial.append(g.op("Mul", [g.op("Concat", [initial[0], initial[5], initial[3], initial[4]], hint, axis=-1),
                                    g.const(np.float32(0), f"{hint}_zero")], hint))
    scanned = [xw] + ([run.mask] if masked else [])
    *_, ys = g.op("Scan", initial + scanned, hint, n_out=len(initial) + 1, body=body, num_scan_inputs=len(scanned))
    return _sequence_outputs(g, run, ys, hint)
