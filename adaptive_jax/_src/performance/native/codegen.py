r"""Translate the jaxpr of an elementwise step into one C loop.

XLA's CPU backend compiles each *output* of an elementwise update into its own loop,
so Adam's step reads the moments back from memory after writing them (40 bytes per
float32 parameter instead of the 28 that must move).  Here the whole step becomes
one loop: every output of element :math:`i` is computed from the inputs of element
:math:`i` in registers and stored once.

The jaxpr is read as two kinds of values:

* **scalars** (rank 0: hyperparameters, the step count, bias corrections) are
  computed by XLA before the call (``mode="xla"``, tried first: JAX binds each scalar
  equation as it is), or in C before the loop (``mode="c"``, the fallback);
* **vectors** (arrays of one of the parameters' shapes) are computed inside loops:
  one loop per parameter leaf, all in one kernel (:mod:`.loops`; the caller's threads
  split their concatenated index range).

**Only what is known is translated.**  A vector equation must be a primitive of the
tables of :mod:`.c_expressions` (or a conversion, or a reshape that keeps the shape
group); a sub-jaxpr is entered only through the primitives that call it exactly once
(:data:`.equations.CALL_PRIMITIVES`: ``jit``, ``custom_jvp_call``, ``custom_vjp_call``,
``checkpoint``).  A loop or branch (``scan`` — so ``fori_loop`` with static bounds —
``while``, ``cond``, or any other primitive carrying a sub-jaxpr) is never translated:
over vectors, or in mode "c", it raises :class:`Unsupported`; over scalars in mode
"xla" it is bound whole, so XLA runs it.  Anything else — a reduction, a gather,
another shape, an unknown primitive or dtype — raises :class:`Unsupported`, and the
caller keeps XLA's path.

**Agreement with XLA** (``tests/test_native_fuzz.py`` checks it on random chains).
The C code does the jaxpr's IEEE operations in the jaxpr's order, plus the rewrites
jax and XLA make to them (``x / s`` for a scalar ``s`` becomes ``x * (1/s)``;
``exp2(x)`` is ``exp(log(2) * x)``), compiled with multiply-adds contracted as LLVM
contracts them for XLA (``-ffp-contract=fast``), in XLA's floating-point environment
(subnormal results flushed to zero).  So:

* arithmetic (``+ - * /``, ``sqrt``, comparisons, selects, min/max, conversions)
  agrees bit for bit, except where one compiler contracts a multiply-add, or XLA folds
  a product of constants (``(x * 3) * 0.25`` into ``x * 0.75``), and the other does
  not: the 14 bit-identical named optimizers are such steps;
* transcendental functions (``exp``, ``exp2``, ``expm1``, ``log``, ``log1p``,
  ``tanh``, ``logistic``, ``pow``, ``rsqrt``) come from the C library and are within
  **8 ulp** of XLA's each (measured worst: 7, ``tanh`` in float64);
* end to end, every finite output is within **4 ulp** of XLA's (**32 ulp** for a
  step calling a transcendental function), measured at the scale of the largest
  finite input or output of that element (a difference of nearly cancelling terms is
  measured against the terms); differences below the smallest normal number count as
  none; NaN, infinities and their signs are identical.  (Measured on 800 random
  chains: at most 1 ulp, and 2 with transcendental functions.)
* subnormal *inputs* (which XLA's own arithmetic never produces) go to the C
  library's functions as numbers, while XLA reads them as zero: ``log(1e-40)`` is
  -92.1 in float32 here, ``-inf`` in XLA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.extend.core
import numpy as np

from adaptive_jax._src.performance.native import equations, loops
from adaptive_jax._src.performance.native.c_expressions import (
    C_TYPES,
    FLOAT_ONLY,
    HEADER,
    IDENTITIES,
    OPERATIONS,
    c_literal,
)
from adaptive_jax._src.performance.native.errors import Unsupported

__all__ = ["Kernel", "Unsupported", "translate"]

# Arrays read or written by one loop (one leaf's: 7 for Adam).  A loop that streamed
# 168 arrays (24 Adam leaves in one loop, before loops were split per leaf) thrashed
# the caches and ran at half the speed of XLA's loops.
MAX_STREAMS = 16

# Loops (parameter leaves) in one kernel.  Tracing and translating a step costs about
# 20 ms per leaf in Python; a model with more leaves belongs on FlatParams anyway.
MAX_LOOPS = 64


@dataclass
class CValue:
    """A value of the generated C code: a variable name (or literal) and its kind."""

    expr: str
    dtype: np.dtype
    group: int | None  # index of the vector's shape; None for a scalar
    literal: Any = None  # the number, for a literal

    @property
    def vector(self) -> bool:
        return self.group is not None


@dataclass
class Kernel:
    """C source of ``aj_kernel`` and how to call it.

    ``inputs[k]`` is what the caller passes as buffer ``k`` (a jaxpr input index, a
    constant array, or a scalar computed by XLA); ``outputs[j]`` says where jaxpr
    output ``j`` comes from: ``("kernel", k)`` result buffer ``k`` of the call,
    ``("input", k)`` jaxpr input ``k`` unchanged, ``("value", v)`` a value computed
    outside the loop (a literal, or a scalar computed by XLA).
    """

    source: str
    size: int = 0  # elements of the kernel's index range: all loops, one after another
    inputs: list[tuple[str, Any]] = field(default_factory=list)
    results: list[tuple[tuple[int, ...], np.dtype]] = field(default_factory=list)
    outputs: list[tuple[str, Any]] = field(default_factory=list)


class _Translator:
    def __init__(self, shapes: list[tuple[int, ...]], mode: str):
        self.shapes = shapes
        self.mode = mode  # "c": scalars computed in C; "xla": scalars computed by XLA
        self.prologue: list[str] = []
        self.pointers: list[str] = []
        self.loads: list[list[str]] = [[] for _ in shapes]  # per shape group
        self.body: list[list[str]] = [[] for _ in shapes]
        self.kernel = Kernel(source="")
        self.counter = 0
        # scalar operations bound in JAX: key -> (the inputs, kept alive; the outputs)
        self.bound: dict[Any, tuple[list[Any], list[Any]]] = {}

    def fresh(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def kind(self, aval: Any) -> int | None:
        """The shape group of a vector, None for a scalar."""
        shape = tuple(aval.shape)
        if shape == ():
            return None
        if shape in self.shapes:
            return self.shapes.index(shape)
        raise Unsupported(f"an intermediate of shape {shape}, not () or a parameter's shape")

    def dtype(self, aval: Any) -> np.dtype:
        try:
            dtype = np.dtype(aval.dtype)
        except TypeError:  # extended dtypes (PRNG keys, float0) have no NumPy equivalent
            raise Unsupported(f"dtype {aval.dtype}") from None
        if dtype not in C_TYPES:
            raise Unsupported(f"dtype {dtype}")
        return dtype

    def add_input(self, source: tuple[str, Any], aval: Any) -> CValue:
        group, dtype = self.kind(aval), self.dtype(aval)
        index = len(self.kernel.inputs)
        self.kernel.inputs.append(source)
        ctype, name = C_TYPES[dtype], f"in{index}"
        if group is not None:
            self.pointers.append(f"const {ctype}* p{index} = (const {ctype}*)in[{index}];")
            self.loads[group].append(f"const {ctype} {name} = p{index}[i];")
        else:
            self.prologue.append(f"const {ctype} {name} = *(const {ctype}*)in[{index}];")
        return CValue(name, dtype, group)

    def run(self, jaxpr: Any, consts: list[Any], args: list[Any]) -> list[Any]:
        env: dict[Any, Any] = {}

        def read(atom: Any) -> Any:
            if isinstance(atom, jax.extend.core.Literal):
                dtype = self.dtype(atom.aval)
                if np.shape(atom.val) != ():
                    raise Unsupported("a non-scalar literal")
                value = np.asarray(atom.val, dtype)
                return CValue(c_literal(value, dtype), dtype, None, value)
            return env[atom]

        for var, value in zip(jaxpr.constvars, consts):
            env[var] = self.constant(value, var.aval)
        for var, value in zip(jaxpr.invars, args):
            env[var] = value
        for eqn in jaxpr.eqns:
            inputs = [read(atom) for atom in eqn.invars]
            outputs = self.equation(eqn, inputs)
            for var, value in zip(eqn.outvars, outputs):
                env[var] = value
        return [read(atom) for atom in jaxpr.outvars]

    def constant(self, value: Any, aval: Any) -> Any:
        if np.shape(value) == ():
            dtype = self.dtype(aval)
            if isinstance(value, jax.core.Tracer):  # pyright: ignore[reportAttributeAccessIssue]
                return self.scalar_from_xla(value, aval)
            value = np.asarray(value, dtype)
            return CValue(c_literal(value, dtype), dtype, None, value)
        return self.add_input(("constant", value), aval)

    def scalar_from_xla(self, value: Any, aval: Any) -> Any:
        if self.mode == "xla":
            return value
        return self.add_input(("value", value), aval)

    def as_c(self, value: Any, aval: Any) -> CValue:
        if isinstance(value, CValue):
            return value
        return self.add_input(("value", value), aval)  # a scalar XLA computed

    def equation(self, eqn: Any, inputs: list[Any]) -> list[Any]:
        name = eqn.primitive.name
        called = equations.called_jaxpr(eqn)
        if called is not None:
            return self.run(called.jaxpr, list(called.consts), inputs)
        if equations.has_sub_jaxpr(eqn.params) and not self.scalar_in_xla(eqn, inputs):
            raise Unsupported(f"{name}: a loop or branch (its body may run any number of times)")
        groups = {self.kind(v.aval) for v in eqn.outvars} - {None}
        if len(groups) > 1:
            raise Unsupported(f"{name} has outputs of several shapes")
        group = groups.pop() if groups else None
        vector = group is not None
        for v in eqn.outvars:
            self.dtype(v.aval)
        if not vector and self.mode == "xla":
            # Every input is a scalar XLA computes (no C value can reach here).
            if any(isinstance(x, CValue) and x.vector for x in inputs):
                raise Unsupported(f"{name} reduces a vector to a scalar")
            if any(isinstance(x, CValue) and x.literal is None for x in inputs):
                raise Unsupported(f"{name} of a scalar computed in C")
            values = [x.literal if isinstance(x, CValue) else x for x in inputs]
            # The same scalar computation repeats for every leaf (a hyperparameter cast,
            # a bias correction): bind it once, so XLA compiles a few scalar kernels,
            # not a few per leaf.  The key holds the input values themselves (compared
            # by identity), so an id is never reused for another value while cached.
            key = equations.binding_key(eqn, values)
            if key not in self.bound:
                self.bound[key] = (values, equations.bind_as_is(eqn, values))
            return self.bound[key][1]
        if any(isinstance(x, CValue) and x.vector for x in inputs) and not vector:
            raise Unsupported(f"{name} reduces a vector to a scalar")
        if any(isinstance(x, CValue) and x.vector and x.group != group for x in inputs):
            raise Unsupported(f"{name} changes the shape of a vector")
        args = [self.as_c(x, atom.aval) for x, atom in zip(inputs, eqn.invars)]
        if len(eqn.outvars) != 1:
            raise Unsupported(f"{name} has several outputs")
        (out,) = eqn.outvars
        dtype = self.dtype(out.aval)
        if name in IDENTITIES:
            (source,) = args[:1]
            if source.dtype != dtype:
                raise Unsupported(f"{name} changing dtype")
            return [CValue(source.expr, dtype, group)]
        if name == "convert_element_type":
            expr = self.convert(args[0], dtype)
        elif name == "reduce_precision":
            info = np.finfo(dtype)
            if (eqn.params["exponent_bits"], eqn.params["mantissa_bits"]) != (
                info.nexp,
                info.nmant,
            ):
                raise Unsupported("reduce_precision to a narrower format")
            expr = args[0].expr
        elif name in OPERATIONS:
            floating = np.issubdtype(args[0].dtype, np.floating) if args else False
            if name in FLOAT_ONLY and not floating:
                raise Unsupported(f"{name} on {args[0].dtype}")
            if name in ("and", "or", "xor", "not") and args[0].dtype != np.bool_:
                raise Unsupported(f"bitwise {name} on integers")
            if name in ("abs", "sign") and not floating:
                raise Unsupported(f"{name} on integers")
            if name == "integer_pow" and not floating and eqn.params["y"] < 0:
                raise Unsupported("a negative integer power of an integer")  # C: 1 / 0 traps
            if name == "div" and vector and args[0].vector and not args[1].vector:
                # XLA rewrites x / broadcast(s) as x * broadcast(1 / s); do the same,
                # so the fused loop rounds as XLA's own loops do.
                reciprocal = self.fresh()
                ctype = C_TYPES[args[1].dtype]
                self.prologue.append(f"const {ctype} {reciprocal} = 1 / {args[1].expr};")
                args[1] = CValue(reciprocal, args[1].dtype, None)
                name = "mul"
            if name == "exp2":
                # jax lowers exp2(x) as exp(log(2) * x): so does this (C's exp2 rounds
                # better, and differs from XLA's by up to 200 ulp for large x).
                ln2 = c_literal(np.log(np.asarray(2, args[0].dtype)), args[0].dtype)
                expr = f"exp({ln2} * {args[0].expr})"
            else:
                expr = OPERATIONS[name](*(a.expr for a in args), **eqn.params)
        else:
            raise Unsupported(f"primitive {name}")
        target = self.fresh()
        line = f"const {C_TYPES[dtype]} {target} = ({C_TYPES[dtype]})({expr});"
        (self.body[group] if group is not None else self.prologue).append(line)
        return [CValue(target, dtype, group)]

    def scalar_in_xla(self, eqn: Any, inputs: list[Any]) -> bool:
        """Whether ``eqn`` is computed by XLA, outside the kernel (mode "xla", scalars)."""
        if self.mode != "xla":
            return False
        if any(tuple(v.aval.shape) != () for v in eqn.outvars):
            return False
        return not any(isinstance(x, CValue) and x.vector for x in inputs)

    def convert(self, value: CValue, dtype: np.dtype) -> str:
        if dtype == np.bool_:
            return f"({value.expr} != 0)"
        if np.issubdtype(value.dtype, np.floating) and not np.issubdtype(dtype, np.floating):
            raise Unsupported("float to integer conversion")
        return f"({C_TYPES[dtype]})({value.expr})"


def translate(
    closed_jaxpr: Any, args: list[Any], shapes: list[tuple[int, ...]], mode: str
) -> Kernel:
    """The kernel for ``closed_jaxpr`` applied to ``args`` (arrays or tracers).

    Vector inputs (of one of ``shapes``) and, in ``mode="c"``, scalar inputs become
    buffers of the call; in ``mode="xla"`` scalar inputs stay JAX values and scalar
    operations are bound as JAX operations (so the caller must be tracing).  The
    kernel's index range is the concatenation of one range per shape, in order.
    """
    translator = _Translator([tuple(shape) for shape in shapes], mode)
    jaxpr = closed_jaxpr.jaxpr
    inputs = []
    for index, (var, value) in enumerate(zip(jaxpr.invars, args)):
        if translator.kind(var.aval) is not None or mode == "c":
            translator.dtype(var.aval)
            inputs.append(translator.add_input(("arg", index), var.aval))
        else:
            inputs.append(value)
    outs = translator.run(jaxpr, list(closed_jaxpr.consts), inputs)
    kernel = translator.kernel
    stores: list[list[str]] = [[] for _ in translator.shapes]
    scalar_stores = []
    arg_names = {
        f"in{k}": source[1] for k, source in enumerate(kernel.inputs) if source[0] == "arg"
    }
    for var, value in zip(jaxpr.outvars, outs):
        if not isinstance(value, CValue):
            kernel.outputs.append(("value", value))
            continue
        group = translator.kind(var.aval)  # a vector output may be a broadcast scalar
        if value.expr in arg_names and value.group == group:
            kernel.outputs.append(("input", arg_names[value.expr]))
            continue
        index = len(kernel.results)
        ctype = C_TYPES[value.dtype]
        kernel.results.append((translator.shapes[group] if group is not None else (), value.dtype))
        kernel.outputs.append(("kernel", index))
        if group is not None:
            translator.pointers.append(f"{ctype}* q{index} = ({ctype}*)out[{index}];")
            stores[group].append(f"q{index}[i] = {value.expr};")
        else:
            scalar_stores.append(f"*({ctype}*)out[{index}] = {value.expr};")
    if not any(shape for shape, _ in kernel.results):
        raise Unsupported("the step computes no per-parameter buffer")
    parts = []
    for group, shape in enumerate(translator.shapes):
        lines = translator.loads[group] + translator.body[group] + stores[group]
        parts += loops.components(lines, int(np.prod(shape)))
    if len(parts) > MAX_LOOPS:
        raise Unsupported(f"{len(parts)} loops (at most {MAX_LOOPS}: use FlatParams)")
    for part in parts:
        streams = sum("[i]" in line for line in part.lines)
        if streams > MAX_STREAMS:
            raise Unsupported(f"{streams} arrays in one loop (at most {MAX_STREAMS})")
    pointer_types = {
        m.group(2): m.group(1) for line in translator.pointers if (m := _POINTER.match(line))
    }
    scalar_types = {
        m.group(2): m.group(1) for line in translator.prologue if (m := _SCALAR.match(line))
    }
    functions, calls = loops.emit(parts, pointer_types, scalar_types)
    kernel.size = sum(part.size for part in parts)
    kernel.source = (
        HEADER
        + functions
        # The kernel itself only computes scalars and calls the loops: compiled without
        # optimisation, its size (a few lines per leaf) costs the C compiler linear time.
        + '\n__attribute__((optimize("O0")))'
        + "\nvoid aj_kernel(const void* const* in, void* const* out, int64_t lo, int64_t hi,"
        + " int64_t first) {\n    "
        + "\n    ".join(translator.prologue + translator.pointers)
        + "\n"
        + calls
        + "    if (first) {\n        "
        + "\n        ".join(scalar_stores)
        + "\n    }\n}\n"
    )
    return kernel


_POINTER = re.compile(r"^(.*?\*) (\w+) = ")
_SCALAR = re.compile(r"^const (\S+) (\w+) = ")
