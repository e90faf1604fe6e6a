"""The playground's safe expression language: text such as `softmax(x @ W, dim=-1)` -> an engine graph.

Text is parsed with Python's `ast` and checked against a whitelist of node types and function names
(never `eval`/`exec`) into a tiny tree (`Num`, `Var`, `BinOp`, `Neg`, `Call`). `interpret` walks that
tree with any value type, so the same tree builds engine nodes here and torch tensors in an oracle.
Shapes are inferred on the `meta` device before any real tensor exists, which bounds sizes cheaply.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from autodiff import ops
from autodiff.graph import Node, Tensor, Variable, topological_sort

MAX_EXPRESSION_CHARS = 2000
MAX_DECLARATION_CHARS = 20_000
MAX_DEPTH = 200  # nesting of the expression tree (the engine is iterative; our walkers recurse)
MAX_NODES = 400  # nodes of the forward graph
MAX_ELEMENTS = 1_000_000  # elements of any one tensor, declared or computed
# Bounds on the total work (and memory: every node's value is kept for display), summed over the
# forward graph; the Graph page applies larger bounds to forward + backward + second order together.
MAX_TOTAL_ELEMENTS = 4_000_000  # elements summed over every node of the forward graph
MAX_MATMUL_MACS = 250_000_000  # multiply-adds summed over every matmul of the forward graph
MAX_RANK = 8
MAX_EXPONENT = 64  # |p| in `a ** p`
DTYPE = torch.float64


class ExprError(ValueError):
    """A bad expression or declaration: says what is wrong, where (1-based column), and what to do."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(f"column {column}: {message}" if column else message)
        self.message = message
        self.column = column  # in the expression
        self.in_declarations = False  # True when the declarations are what is wrong

    def caret(self, text: str) -> str:
        """The text with a `^` under the column, for a code block."""
        if not self.column:
            return text
        return f"{text}\n{' ' * (self.column - 1)}^"


# ---------------------------------------------------------------------------------------------
# The tree: what the parser produces and `interpret` walks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: float | int
    col: int


@dataclass(frozen=True)
class Var:
    name: str
    col: int


@dataclass(frozen=True)
class BinOp:
    symbol: str  # one of + - * / @ **
    left: Expr
    right: Expr
    col: int


@dataclass(frozen=True)
class Neg:
    operand: Expr
    col: int


@dataclass(frozen=True)
class Call:
    func: str  # a key of FUNCTIONS
    args: tuple  # tensor arguments (Expr), or for concat one tuple of Expr
    attrs: dict  # constant attributes by name, defaults filled in
    col: int
    attr_cols: dict = field(default_factory=dict)  # column of each attribute the text gives


Expr = Num | Var | BinOp | Neg | Call

BINARY = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.MatMult: ("@", operator.matmul),
    ast.Pow: ("**", operator.pow),
}
APPLY = {symbol: fn for symbol, fn in BINARY.values()}


# ---------------------------------------------------------------------------------------------
# The functions of the language: name -> engine op, tensor arguments, constant attributes
# ---------------------------------------------------------------------------------------------

REQUIRED = object()


@dataclass(frozen=True)
class Function:
    """A callable name: how many tensor arguments it takes, then its attributes (kind, default)."""

    op: Callable
    tensors: int  # leading tensor arguments; 0 means one list of tensors (concat)
    params: tuple[tuple[str, str, object], ...] = ()
    help: str = ""


_DIM = (("dim", "dims", None), ("keepdim", "bool", False))
FUNCTIONS: dict[str, Function] = {
    **{op.name: Function(op, 1, help=f"{op.name}(a)") for op in
       (ops.exp, ops.log, ops.sqrt, ops.relu, ops.sigmoid, ops.tanh, ops.erf, ops.gelu, ops.silu, ops.abs_op)},
    "sum": Function(ops.sum_op, 1, _DIM, "sum(a, dim=None, keepdim=False)"),
    "mean": Function(ops.mean, 1, _DIM, "mean(a, dim=None, keepdim=False)"),
    "max": Function(ops.max_op, 1, _DIM, "max(a, dim=None, keepdim=False)"),
    "softmax": Function(ops.softmax, 1, (("dim", "int", -1),), "softmax(a, dim=-1)"),
    "log_softmax": Function(ops.log_softmax, 1, (("dim", "int", -1),), "log_softmax(a, dim=-1)"),
    "layernorm": Function(ops.layernorm, 1, (("normalized_shape", "ints", REQUIRED), ("eps", "float", 1e-5)),
                          "layernorm(a, normalized_shape, eps=1e-5)"),
    "transpose": Function(ops.transpose, 1, (("dim0", "int", -2), ("dim1", "int", -1)), "transpose(a, dim0, dim1)"),
    "permute": Function(ops.permute, 1, (("dims", "ints", REQUIRED),), "permute(a, dims)"),
    "reshape": Function(ops.reshape, 1, (("shape", "ints", REQUIRED),), "reshape(a, shape)"),
    "unsqueeze": Function(ops.unsqueeze, 1, (("dim", "int", REQUIRED),), "unsqueeze(a, dim)"),
    "squeeze": Function(ops.squeeze, 1, (("dim", "int", REQUIRED),), "squeeze(a, dim)"),
    "slice": Function(ops.slice_op, 1, (("dim", "int", REQUIRED), ("start", "int?", None), ("end", "int?", None)),
                      "slice(a, dim, start=None, end=None)"),
    "concat": Function(ops.concat, 0, (("dim", "int", 0),), "concat([a, b, ...], dim=0)"),
}  # fmt: skip
# Operators by name: `add(a, b)` is `a + b`, so numbers work on either side.
ALIASES = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "power": "**", "neg": "-"}
ALL_NAMES = sorted([*FUNCTIONS, *ALIASES])


# ---------------------------------------------------------------------------------------------
# Parsing: text -> tree, rejecting everything outside the whitelist with a clear message
# ---------------------------------------------------------------------------------------------

_REJECTED = {  # node types people try, and what to say about them
    ast.Attribute: "attribute access (`a.b`) is not allowed",
    ast.Subscript: "indexing (`a[...]`) is not allowed: use slice(a, dim, start, end)",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.Compare: "comparisons are not supported",
    ast.BoolOp: "`and`/`or` are not supported",
    ast.IfExp: "`if ... else` is not supported",
    ast.NamedExpr: "`:=` is not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed",
    ast.Starred: "`*args` is not allowed",
}


def _col(text: str, node: ast.AST, shift: int = 0) -> int:
    """1-based character column of an ast node (ast counts UTF-8 bytes)."""
    return len(text.encode()[: node.col_offset].decode(errors="ignore")) + 1 + shift


def parse(text: str) -> Expr:
    """The tree of one expression, or ExprError saying what is wrong and at which column."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExprError(f"the expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_CHARS}")
    if not text.strip():
        raise ExprError("the expression is empty: type one, e.g. `x1 * x2 + x1`")
    # Newlines become spaces so a multi-line input parses as one expression with the same columns;
    # leading spaces are cut (Python would call them an indent) and added back to every column.
    flat = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    body = flat.lstrip()
    shift = len(flat) - len(body)
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as err:
        column = err.offset + shift if err.offset else None
        raise ExprError(f"syntax error: {err.msg}; check the brackets and operators", column) from None
    except (ValueError, RecursionError, MemoryError) as err:  # null bytes, absurd nesting
        raise ExprError(f"cannot parse the expression: {err}") from None
    return _Parser(body, shift).expr(tree.body, 0)


class _Parser:
    def __init__(self, text: str, shift: int):
        self.text, self.shift = text, shift

    def col(self, node: ast.AST) -> int:
        return _col(self.text, node, self.shift)

    def fail(self, message: str, node: ast.AST) -> ExprError:
        return ExprError(message, self.col(node))

    def expr(self, node: ast.AST, depth: int) -> Expr:
        """A tensor-or-number expression."""
        if depth > MAX_DEPTH:
            raise self.fail(f"the expression nests deeper than {MAX_DEPTH} levels: split it up", node)
        col = self.col(node)
        if isinstance(node, ast.Constant):
            return Num(self.number(node), col)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.expr(node.operand, depth + 1)
            if isinstance(node.op, ast.UAdd):
                return inner
            return Num(-inner.value, col) if isinstance(inner, Num) else Neg(inner, col)
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            symbol = BINARY[type(node.op)][0]
            return self.binop(symbol, self.expr(node.left, depth + 1), self.expr(node.right, depth + 1), node)
        if isinstance(node, ast.BinOp):
            raise self.fail(f"operator `{type(node.op).__name__}` is not supported: use + - * / @ **", node)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        if isinstance(node, (ast.List, ast.Tuple)):
            raise self.fail("a list is only allowed as an argument, e.g. layernorm(x, [4]) or concat([a, b])", node)
        raise self.fail(_REJECTED.get(type(node), f"`{type(node).__name__}` is not allowed here"), node)

    def number(self, node: ast.Constant) -> float | int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            what = "strings are not allowed" if isinstance(value, (str, bytes)) else f"{value!r} is not a number here"
            raise self.fail(what, node)
        if isinstance(value, int) and abs(value) > 2**53 or not math.isfinite(value):
            raise self.fail(f"the number {value} is too large", node)
        return value

    def name(self, node: ast.Name) -> Var:
        name = node.id
        if name in FUNCTIONS or name in ALIASES:
            raise self.fail(f"'{name}' is a function: call it, e.g. {name}(x)", node)
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", name):
            raise self.fail(f"'{name}' is not a valid variable name: use letters, digits and _, e.g. x1", node)
        return Var(name, self.col(node))

    def binop(self, symbol: str, left: Expr, right: Expr, node: ast.AST) -> Expr:
        col = self.col(node)
        if symbol == "**" and not isinstance(right, Num):
            if not isinstance(left, Num):
                raise self.fail("the exponent of ** must be a number; for a tensor exponent use exp(y * log(x))", node)
            if left.value <= 0:
                raise self.fail("a number raised to a tensor power needs a positive base, e.g. 2 ** x", node)
        if symbol == "**" and isinstance(right, Num):
            if abs(right.value) > MAX_EXPONENT:
                raise self.fail(f"the exponent {right.value} is too large: keep |p| <= {MAX_EXPONENT}", node)
        if isinstance(left, Num) and isinstance(right, Num):  # fold number arithmetic now
            if symbol == "@":
                raise self.fail("@ needs tensors on both sides, not numbers", node)
            try:
                value = APPLY[symbol](float(left.value), float(right.value))
            except (ZeroDivisionError, OverflowError, ValueError) as err:
                raise self.fail(f"cannot compute {left.value} {symbol} {right.value}: {err}", node) from None
            if isinstance(value, complex) or not math.isfinite(value):
                raise self.fail(f"{left.value} {symbol} {right.value} is not a finite real number", node)
            return Num(value, col)
        if symbol == "@" and (isinstance(left, Num) or isinstance(right, Num)):
            raise self.fail("@ needs tensors on both sides; to scale, use *", node)
        return BinOp(symbol, left, right, col)

    def call(self, node: ast.Call, depth: int) -> Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail("only the playground's functions can be called, by name, e.g. relu(x)", node)
        name = node.func.id
        if name not in FUNCTIONS and name not in ALIASES:
            close = difflib.get_close_matches(name, ALL_NAMES, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise self.fail(f"unknown function '{name}' — {hint}available: {', '.join(ALL_NAMES)}", node.func)
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail("`**kwargs` is not allowed", kw.value)
        if name in ALIASES:
            return self.alias(name, node, depth)
        fn = FUNCTIONS[name]
        positional = list(node.args)
        if fn.tensors == 0:  # concat: one list of tensors
            if not positional or not isinstance(positional[0], (ast.List, ast.Tuple)):
                raise self.fail(f"{name} takes a list of tensors first: {fn.help}", node)
            items = positional.pop(0).elts
            if not items:
                raise self.fail(f"{name} needs at least one tensor in its list", node)
            args = (tuple(self.tensor(item, name, depth) for item in items),)
        else:
            if len(positional) < fn.tensors:
                raise self.fail(f"{name} needs {fn.tensors} tensor argument(s): {fn.help}", node)
            args = tuple(self.tensor(a, name, depth) for a in positional[: fn.tensors])
            positional = positional[fn.tensors :]
        attrs, attr_cols = self.attrs(fn, name, positional, node)
        return Call(name, args, attrs, self.col(node), attr_cols)

    def alias(self, name: str, node: ast.Call, depth: int) -> Expr:
        arity = 1 if name == "neg" else 2
        if len(node.args) != arity or node.keywords:
            raise self.fail(f"{name} takes {arity} argument(s) and no keywords", node)
        args = [self.expr(a, depth + 1) for a in node.args]
        if name == "neg":
            return Num(-args[0].value, args[0].col) if isinstance(args[0], Num) else Neg(args[0], self.col(node))
        return self.binop(ALIASES[name], args[0], args[1], node)

    def tensor(self, node: ast.AST, func: str, depth: int) -> Expr:
        arg = self.expr(node, depth + 1)
        if isinstance(arg, Num):
            raise self.fail(f"{func} needs a tensor expression here, not the number {arg.value}", node)
        return arg

    def attrs(self, fn: Function, func: str, positional: list[ast.AST], node: ast.Call) -> tuple[dict, dict]:
        """The attributes by name (defaults filled in) and the column of each one the text gives."""
        names = [p[0] for p in fn.params]
        if len(positional) > len(fn.params):
            raise self.fail(f"{func} takes too many arguments: {fn.help}", node)
        given = dict(zip(names, positional))
        for kw in node.keywords:
            if kw.arg not in names:
                raise self.fail(f"{func} has no argument '{kw.arg}': {fn.help}", kw.value)
            if kw.arg in given:
                raise self.fail(f"{func} got '{kw.arg}' twice", kw.value)
            given[kw.arg] = kw.value
        attrs = {}
        for pname, kind, default in fn.params:
            if pname in given:
                attrs[pname] = self.literal(given[pname], kind, f"{func}'s {pname}")
            elif default is REQUIRED:
                raise self.fail(f"{func} needs its argument '{pname}': {fn.help}", node)
            else:
                attrs[pname] = default
        return attrs, {pname: self.col(value) for pname, value in given.items()}

    def literal(self, node: ast.AST, kind: str, what: str):
        """A constant attribute: an int, a float, a bool, None or a list of ints, per `kind`."""
        if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, bool)):
            ok = node.value is None and kind in ("dims", "int?") or isinstance(node.value, bool) and kind == "bool"
            if not ok:
                raise self.fail(f"{what} cannot be {node.value}", node)
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            if kind not in ("dims", "ints"):
                raise self.fail(f"{what} must be a single number, not a list", node)
            if len(node.elts) > MAX_RANK:
                raise self.fail(f"{what} has more than {MAX_RANK} entries", node)
            return tuple(self.literal(e, "int", what) for e in node.elts)
        value = self.expr(node, 0)
        if not isinstance(value, Num):
            raise self.fail(f"{what} must be a constant, not a tensor expression", node)
        if kind == "float":
            return float(value.value)
        if kind == "bool" or not float(value.value).is_integer():
            raise self.fail(f"{what} must be {'True or False' if kind == 'bool' else 'a whole number'}", node)
        number = int(value.value)
        if abs(number) > MAX_ELEMENTS:
            raise self.fail(f"{what} is too large", node)
        return (number,) if kind == "ints" else number


def variables_of(tree: Expr) -> list[str]:
    """Variable names in order of first appearance."""
    names: dict[str, None] = {}

    def walk(e):
        if isinstance(e, Var):
            names.setdefault(e.name)
        elif isinstance(e, tuple):
            for item in e:
                walk(item)
        elif isinstance(e, (BinOp,)):
            walk(e.left), walk(e.right)
        elif isinstance(e, Neg):
            walk(e.operand)
        elif isinstance(e, Call):
            walk(e.args)

    walk(tree)
    return list(names)


def interpret(
    tree: Expr,
    env: dict,
    call: Callable[[str, list, dict], object],
    on_error: Callable[[Exception, Expr], Exception] | None = None,
    on_value: Callable[[object, Expr], None] | None = None,
):
    """Evaluate the tree with values from `env` (nodes, tensors...): operators via Python's own,
    functions via `call(name, args, attrs)`. `on_error(err, expr)` may turn a failure into another
    exception; `on_value(value, expr)` sees the result of every operator and call."""

    def walk(e):
        if isinstance(e, Num):
            return e.value
        if isinstance(e, Var):
            return env[e.name]
        try:
            if isinstance(e, Neg):
                value = -walk(e.operand)
            elif isinstance(e, BinOp):
                value = APPLY[e.symbol](walk(e.left), walk(e.right))
            elif FUNCTIONS[e.func].tensors == 0:
                value = call(e.func, [[walk(a) for a in e.args[0]]], e.attrs)
            else:
                value = call(e.func, [walk(a) for a in e.args], e.attrs)
        except ExprError:
            raise
        except Exception as err:
            if on_error is None:
                raise
            raise on_error(err, e) from err
        if on_value is not None:
            on_value(value, e)
        return value

    return walk(tree)


# ---------------------------------------------------------------------------------------------
# Declarations: `x: 2x3, W: 3x4 = [[...]]`
# ---------------------------------------------------------------------------------------------


@dataclass
class Declaration:
    shape: tuple[int, ...] | None = None
    value: Tensor | None = None


def _split_entries(text: str) -> list[str]:
    """Split on , ; and newlines that are outside brackets."""
    entries, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if depth == 0 and ch in ",;\n":
            entries.append(text[start:i])
            start = i + 1
    entries.append(text[start:])
    return [e.strip() for e in entries if e.strip()]


def parse_shape(text: str, where: str) -> tuple[int, ...]:
    """`2x3`, `2 x 3`, `(2, 3)`, `[2,3]`, `5`, `scalar` or `()` -> a shape."""
    s = text.strip().lower()
    if s in ("scalar", "()", "[]"):
        return ()
    s = s.strip("()[]")
    parts = [p for p in re.split(r"\s*(?:x|×|,)\s*", s) if p != ""]
    # ASCII digits only: str.isdigit() also accepts '²' (which int() rejects) and '٣' (which it reads).
    if not parts or not all(re.fullmatch(r"[0-9]{1,9}", p) for p in parts):
        raise ExprError(f"{where}: cannot read the shape '{text.strip()}': write it like 2x3, 5 or scalar")
    shape = tuple(int(p) for p in parts)
    if len(shape) > MAX_RANK or min(shape) < 1:
        raise ExprError(f"{where}: a shape has 1 to {MAX_RANK} sizes, each at least 1")
    if math.prod(shape) > MAX_ELEMENTS:
        raise ExprError(f"{where}: {math.prod(shape)} elements is too many; the limit is {MAX_ELEMENTS}")
    return shape


def _value(text: str, where: str) -> Tensor:
    """A number or nested list of numbers, read with `ast` (only lists, numbers and minus signs)."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExprError(f"{where}: cannot read the value: write a number or a list like [[1, 2], [3, 4]]") from None

    def walk(n, depth):
        if depth > MAX_RANK:
            raise ExprError(f"{where}: the value nests deeper than {MAX_RANK} levels")
        if isinstance(n, (ast.List, ast.Tuple)):
            return [walk(e, depth + 1) for e in n.elts]
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = walk(n.operand, depth)
            if isinstance(v, list):
                raise ExprError(f"{where}: a sign goes before a number, not a list")
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            try:
                return float(n.value)
            except OverflowError:  # an int with hundreds of digits
                raise ExprError(f"{where}: a number is too large: float64 goes up to about 1.8e308") from None
        raise ExprError(f"{where}: values are numbers or nested lists of numbers, like [[1, 2], [3, 4]]")

    data = walk(node, 0)  # outside the try below: its own ExprErrors are ValueErrors too
    try:
        return torch.tensor(data, dtype=DTYPE)
    except (ValueError, TypeError) as err:  # ragged lists
        raise ExprError(f"{where}: the rows of the value must all have the same length ({err})") from None


def parse_declarations(text: str) -> dict[str, Declaration]:
    """`name: shape`, `name = value` or `name: shape = value`, separated by commas, ; or newlines."""
    if len(text) > MAX_DECLARATION_CHARS:
        raise ExprError(f"the declarations are {len(text)} characters long; the limit is {MAX_DECLARATION_CHARS}")
    decls: dict[str, Declaration] = {}
    for entry in _split_entries(text):
        match = re.fullmatch(r"([A-Za-z][A-Za-z0-9_]{0,31})\s*(?::([^=]*))?(?:=(.*))?", entry, re.S)
        if not match or (match.group(2) is None and match.group(3) is None):
            raise ExprError(f"cannot read the declaration '{entry[:40]}': write it like `x: 2x3` or `x = [1, 2]`")
        name, shape_text, value_text = match.groups()
        where = f"declaration of '{name}'"
        if name in decls:
            raise ExprError(f"{where}: '{name}' is declared twice")
        decl = Declaration()
        if shape_text is not None:
            decl.shape = parse_shape(shape_text, where)
        if value_text is not None:
            decl.value = _value(value_text, where)
            if decl.shape is not None and tuple(decl.value.shape) != decl.shape:
                raise ExprError(f"{where}: the value has shape {tuple(decl.value.shape)} but {decl.shape} is declared")
            decl.shape = tuple(decl.value.shape)
            if decl.value.numel() > MAX_ELEMENTS:
                raise ExprError(f"{where}: the value has too many elements")
        decls[name] = decl
    return decls


# ---------------------------------------------------------------------------------------------
# Programs: an expression with its variables, values and every node's shape
# ---------------------------------------------------------------------------------------------


@dataclass
class Program:
    """A compiled expression: its tree, its graph, its variables and their fed values."""

    text: str
    tree: Expr
    output: Node
    variables: dict[str, Node]  # in order of first use
    values: dict[str, Tensor]  # fed values (declared, or seeded random), float64
    shapes: dict[Node, tuple[int, ...]] = field(default_factory=dict)  # every forward node

    def feed(self) -> dict[Node, Tensor]:
        return {node: self.values[name] for name, node in self.variables.items()}


def infer_shapes(
    outputs: list[Node],
    feed_shapes: dict[Node, tuple[int, ...]],
    where=None,
    max_total: int = MAX_TOTAL_ELEMENTS,
    max_macs: int = MAX_MATMUL_MACS,
    graph: str = "the expression",
) -> dict:
    """Every node's shape, computed on the `meta` device (no memory, no arithmetic); checks sizes:
    each tensor's, the elements summed over all nodes (`max_total`) and the multiply-adds summed over
    all matmuls (`max_macs`). `where(node, attr=None)` gives the column of a node (or of one of its
    call's arguments) for error messages; `graph` names what is measured in them."""
    shapes: dict[Node, tuple[int, ...]] = {}
    metas: dict[int, Tensor] = {}
    total = macs = 0
    for node in topological_sort(outputs):
        if node in feed_shapes:
            metas[id(node)] = torch.empty(feed_shapes[node], dtype=DTYPE, device="meta")
        else:
            args = [metas[id(i)] for i in node.inputs]
            try:
                metas[id(node)] = node.op.compute(node, args)
            except Exception as err:
                blamed = _blame(node, args)
                if blamed is not None:  # a constant argument that cannot fit this input: point at it
                    attr, sentence = blamed
                    raise ExprError(f"{node.op.name}: {sentence}", where(node, attr) if where else None) from None
                in_shapes = " and ".join(str(list(a.shape)) for a in args)
                raise ExprError(
                    f"{node.op.name} cannot take inputs of shapes {in_shapes}: {_short(err)}" + _hint(node, args),
                    where(node) if where else None,
                ) from None
        shape = shapes[node] = tuple(metas[id(node)].shape)
        if math.prod(shape) > MAX_ELEMENTS:
            raise ExprError(
                f"{node.op.name} would make a tensor of shape {list(shape)}, over {MAX_ELEMENTS} elements: "
                "use smaller shapes",
                where(node) if where else None,
            )
        total += math.prod(shape)
        if total > max_total:
            raise ExprError(
                f"{graph} would compute more than {max_total:,} tensor elements in all (every node counts) — too "
                "much work to evaluate and check here: use smaller shapes or a shorter expression",
                where(node) if where else None,
            )
        if node.op is ops.matmul:
            inner = shapes[node.inputs[0]][-1:] or (1,)  # the summed dimension (a 0-d input has none)
            macs += math.prod(shape) * inner[0]
            if macs > max_macs:
                raise ExprError(
                    f"{graph} would need more than {max_macs:,} multiply-adds in matmuls — too much work to "
                    "evaluate and check here: use smaller shapes or fewer matmuls",
                    where(node) if where else None,
                )
    return shapes


_DIM_ATTRS = ("dim", "dim0", "dim1", "dims")


def _blame(node: Node, args: list[Tensor]) -> tuple[str, str] | None:
    """(attribute, what is wrong with it) when a constant argument of `node` cannot fit its input:
    a dim out of range, or a layernorm shape that is not the input's last dims."""
    if not args:
        return None
    shape = list(args[0].shape)
    bound = max(len(shape) + (node.op.name == "unsqueeze"), 1)  # unsqueeze may add a dim at the end
    for name in _DIM_ATTRS:
        value = node.attrs.get(name)
        for d in value if isinstance(value, tuple) else (value,):
            if isinstance(d, int) and not -bound <= d < bound:
                given = f"{name}={d}" if not isinstance(value, tuple) else f"{name}={list(value)}: {d}"
                return name, (
                    f"{given} is out of range for an input of shape {shape} ({len(shape)} dims): "
                    f"use a dim from -{bound} to {bound - 1}"
                )
    normalized = node.attrs.get("normalized_shape")
    if (
        node.op.name == "layernorm"
        and normalized is not None
        and shape[len(shape) - len(normalized) :] != list(normalized)
    ):
        return "normalized_shape", (
            f"normalized_shape={list(normalized)} must be the last dims of the input's shape {shape}, "
            f"e.g. [{shape[-1] if shape else 1}]"
        )
    return None


def _short(err: Exception) -> str:
    return str(err).splitlines()[0][:200]


def _hint(node: Node, args: list[Tensor]) -> str:
    scalars = [i.name for i, a in zip(node.inputs, args) if i.op is ops.placeholder and a.ndim == 0]
    if scalars:
        return f" ('{scalars[0]}' is a scalar; declare its shape, e.g. `{scalars[0]}: 2x3`)"
    return ""


def _engine_call(name: str, args: list, attrs: dict) -> Node:
    return FUNCTIONS[name].op(*args, **attrs)


def compile_program(text: str, declarations: str = "", seed: int = 0) -> Program:
    """Parse `text`, build its graph from `declarations` (shapes, optional values), infer every
    shape and fill missing values from a generator seeded with `seed`. Raises ExprError."""
    tree = parse(text)
    if isinstance(tree, Num):
        raise ExprError("the expression has no variables: use at least one, e.g. `x * 2`")
    try:
        decls = parse_declarations(declarations)
    except ExprError as err:
        err.in_declarations = True
        raise
    names = variables_of(tree)
    variables = {name: Variable(name) for name in names}

    # Each node remembers the column of the expression that made it, for shape errors found later,
    # and a call's node its Call, so an error about one of its arguments can point at that argument.
    columns: dict[int, int] = {id(v): 0 for v in variables.values()}
    calls: dict[int, Call] = {}

    def where(node: Node, attr: str | None = None) -> int | None:
        call = calls.get(id(node))
        if attr is not None and call is not None and attr in call.attr_cols:
            return call.attr_cols[attr]
        return columns.get(id(node)) or None

    def remember(value, e: Expr) -> None:
        if isinstance(e, Call) and isinstance(value, Node):
            calls.setdefault(id(value), e)
        stack = [value] if isinstance(value, Node) else []
        while stack:
            node = stack.pop()
            if id(node) not in columns:
                columns[id(node)] = e.col
                stack.extend(node.inputs)

    def on_error(err: Exception, e: Expr) -> ExprError:
        return ExprError(_short(err), e.col)

    output = interpret(tree, variables, _engine_call, on_error, remember)
    nodes = topological_sort([output])
    if len(nodes) > MAX_NODES:
        raise ExprError(f"the graph has {len(nodes)} nodes; the limit is {MAX_NODES}: use a shorter expression")

    # Shapes first (no memory, no arithmetic), so an expression too big to run costs nothing to refuse.
    declared = {name: decls.get(name, Declaration()) for name in names}
    feed_shapes = {variables[n]: d.shape or () for n, d in declared.items()}
    shapes = infer_shapes([output], feed_shapes, where)
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, Tensor] = {}
    for name, decl in declared.items():
        shape = decl.shape or ()
        values[name] = decl.value if decl.value is not None else torch.randn(shape, generator=generator, dtype=DTYPE)
    return Program(text, tree, output, variables, values, shapes)
