"""Plans turned into straight-line Python: one local per value, one call per node, `del` where
a value is freed, compiled once per graph and set of fed nodes (in the spirit of torch.fx's
`GraphModule.code`). The source is readable and printable (`Evaluator.source`); an error inside
it is mapped back, by line, to the op, the node and the input shapes. With `profile=True` the same code
also reads a clock after each step and returns the readings with its outputs (autodiff/profile.py).
"""

from __future__ import annotations

import builtins
import keyword
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from autodiff.graph import Node, OpError, Tensor
from autodiff.plan import Plan, Step, gradient_shape_error


@dataclass
class Compiled:
    """A plan's generated function, its source, and where each step sits in that source."""

    source: str
    function: Callable[..., list[Tensor]] | None  # None when only the source was asked for
    step_at_line: dict[int, tuple[Step, list[str]]]  # line -> (step, names of the values it reads)
    code: object | None  # the function's code object, to find its frame in a traceback
    options: dict = field(default_factory=dict)  # generate()'s arguments, to make its profiled twin


def _literal(value, constants: dict) -> str:
    """Python source for an attr value: a literal when repr round-trips, else a named constant."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, tuple):
        parts = [_literal(v, constants) for v in value]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
    name = f"_c{len(constants)}"  # a leading _: no fed variable's local can take this name
    constants[name] = value
    return name


def _identifier(name: str, taken: set[str]) -> str | None:
    """`name` when it can be a local as it is. ASCII only: Python compiles identifiers in NFKC form, so a
    fullwidth `ｒｅｌｕ` would become `relu` and shadow the op function (and `ｔ3` a generated `t3`)."""
    ok = name.isascii() and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")
    return name if ok and name not in taken and not hasattr(builtins, name) else None


def _fresh(name: str, taken: set[str]) -> str:
    """`name`, or `name_`, `name__`, ... : the first that no other local or function has."""
    while name in taken:
        name += "_"
    return name


def generate(
    plan: Plan,
    title: str = "graph",
    checks: bool = True,
    names: dict[Node, str] | None = None,
    compile_code: bool = True,
    passing: dict[int, int] | None = None,
    ready: bool = False,
    profile: bool = False,
    synchronize: Callable[[], object] | None = None,
) -> Compiled:
    """Straight-line source for `plan` and its compiled function `f(*fed_values) -> outputs`.
    With `checks=False` the gradient-shape checks are left out (for shapes already checked);
    `names` may give locals their names (e.g. a drawing's ids), where they are free identifiers;
    with `compile_code=False` only the source is made (for display); `passing` maps the slot of a
    step whose op passes an input through unchanged (at the shapes this code is made for) to that
    input's slot: the step becomes a plain assignment. With `ready=True` the function takes a first
    argument `ready` and calls `ready(k, value)` as soon as output k is computed (fed outputs first), so a
    caller can start work on early outputs (e.g. send gradients) while the rest is computed.
    With `profile=True` the code is the same plus a clock reading (`time.perf_counter_ns`) before the
    first step and after each one (its call, checks and `del`), and it returns `(outputs, readings)`:
    step i of `plan.steps` took readings[i + 1] - readings[i] ns. `synchronize` (e.g.
    torch.cuda.synchronize) is called before each reading, so a step's time includes its device work."""
    options = dict(title=title, checks=checks, names=names, passing=passing, ready=ready)
    names, passing = names or {}, passing or {}
    namespace: dict[str, object] = {}
    function_of: dict[int, str] = {}  # id(tensor function) -> its name in the source
    taken = {"check", "ready"}
    if profile:  # a leading _ keeps them from fed names; `taken` from an op function named so
        taken |= {"_clock", "_lap", "_laps", "_sync"}
        lap = "_sync(); _lap(_clock())" if synchronize else "_lap(_clock())"

    def function_name(op, fn) -> str:
        key = id(fn)
        if key not in function_of:
            base = op.name if op.name.isidentifier() and not keyword.iskeyword(op.name) else "op"
            name, k = base, 1
            while name in taken or hasattr(builtins, name):  # sum -> sum_op, like the public names
                k += 1
                name = f"{base}_op" if k == 2 else f"{base}_{k}"
            taken.add(name)
            function_of[key] = name
            namespace[name] = fn
        return function_of[key]

    # Fed values keep their variable's name when it is a plain identifier; others are t<slot>.
    local = {}
    for slot, node in plan.fed:
        local[slot] = _identifier(node.name, taken) or _fresh(f"t{slot}", taken)
        taken.add(local[slot])
    args = [local[slot] for slot, _ in plan.fed]
    for step in plan.steps:
        given = names.get(step.node)
        name = given if given and _identifier(given, taken) else _fresh(f"t{step.slot}", taken)
        local[step.slot] = name
        taken.add(name)

    lines = [f"def {title}({', '.join(['ready', *args] if ready else args)}):"]
    ready_at = plan.output_positions() if ready else {}
    if ready:
        for slot, _ in plan.fed:
            lines.extend(f"    ready({k}, {local[slot]})" for k in ready_at.get(slot, ()))
    # A check compares a gradient with its input's shape, recorded when the input exists (`_s<slot>`, a
    # leading _: no fed name can take it), so the check keeps no value alive.
    checked = {c.wrt for step in plan.steps for c in step.checks} if checks else set()
    lines.extend(f"    _s{slot} = {local[slot]}.shape" for slot, _ in plan.fed if slot in checked)
    if profile:
        lines += ["    _laps = []", "    _lap = _laps.append", f"    {lap}"]
    step_at_line: dict[int, tuple[Step, list[str]]] = {}
    n_checks = 0  # the index of a check in the plan's order (the error names it)
    constants: dict[str, object] = {}
    for step in plan.steps:
        node = step.node
        reads = [local[s] for s in step.inputs]
        call = node.op.tensor_call(node)
        if step.slot in passing:  # the op would return this input itself: no call
            text = f"{local[step.slot]} = {local[passing[step.slot]]}"
        elif call is not None:
            fn, attrs = call
            arg_text = ", ".join([*reads, *(_literal(a, constants) for a in attrs)])
            text = f"{local[step.slot]} = {function_name(node.op, fn)}({arg_text})"
        else:  # an op that computes some other way: call its compute with the node
            node_name = f"_n{step.slot}"
            namespace[node_name] = node
            fn_name = function_name(node.op, node.op.compute)
            text = f"{local[step.slot]} = {fn_name}({node_name}, [{', '.join(reads)}])"
        # The node's name as a comment (a numbered one says nothing): printable characters only,
        # so no name can end the comment.
        label = "".join(ch if ch.isprintable() else "?" for ch in node.name[:40])
        label = label if len(node.name) <= 40 else label[:37] + "..."
        lines.append(f"    {text}" if node.auto_named else f"    {text}  # {label}")
        step_at_line[len(lines)] = (step, reads)
        if step.slot in checked:
            lines.append(f"    _s{step.slot} = {local[step.slot]}.shape")
        for c in step.checks if checks else ():
            grad = local[c.grad]
            lines.append(f"    if {grad}.shape != _s{c.wrt}: check({n_checks}, {grad}.shape, _s{c.wrt})")
            n_checks += 1
        if ready:
            lines.extend(f"    ready({k}, {local[step.slot]})" for k in ready_at.get(step.slot, ()))
        if step.free:
            lines.append(f"    del {', '.join(local[s] for s in step.free)}")
        if profile:  # the step's time includes freeing what it read last
            lines.append(f"    {lap}")
    outputs = ", ".join(local[s] for s in plan.outputs)
    lines.append(f"    return [{outputs}], _laps" if profile else f"    return [{outputs}]")
    source = "\n".join(lines) + "\n"

    options["profile"] = profile
    if not compile_code:
        return Compiled(source, None, step_at_line, None, options)
    all_checks = [c for step in plan.steps for c in step.checks]

    def check(k: int, grad_shape, wrt_shape) -> None:
        raise gradient_shape_error(plan, all_checks[k], grad_shape, wrt_shape)

    namespace.update(constants, check=check)
    if profile:
        namespace.update(_clock=time.perf_counter_ns, _sync=synchronize)
    # Not registered with linecache: a long-running app compiles many graphs, and an error inside the
    # code is mapped back to its node by line (error_in_generated) anyway.
    code = compile(source, f"<autodiff generated {title}>", "exec")
    exec(code, namespace)  # our own generated text, never user text
    function = namespace[title]
    return Compiled(source, function, step_at_line, function.__code__, options)


def op_error(node: Node, args: list, err: Exception) -> OpError:
    """The error of a failed op: its name, the node and the input shapes."""
    shapes = ", ".join(str(tuple(a.shape)) if isinstance(a, Tensor) else type(a).__name__ for a in args)
    return OpError(f"{node.op.name} failed at node '{node.name}' on inputs of shapes {shapes}: {err}")


def error_in_generated(compiled: Compiled, err: Exception, tb: TracebackType | None) -> Exception:
    """Map an exception raised inside generated code to the OpError naming its node, by the line
    it was raised at; exceptions of other origins (a failed shape check) are returned unchanged."""
    while tb is not None and tb.tb_frame.f_code is not compiled.code:
        tb = tb.tb_next
    if tb is None or tb.tb_lineno not in compiled.step_at_line:
        return err
    step, reads = compiled.step_at_line[tb.tb_lineno]
    values = tb.tb_frame.f_locals
    return op_error(step.node, [values.get(name) for name in reads], err)
