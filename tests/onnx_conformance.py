"""The ONNX backend's own test cases, run through cnnkit.onnx.load_model.

The ``onnx`` wheel ships the node tests' generators (``onnx.backend.test.case.node``: each
builds a model and computes its expected outputs with NumPy) and the data of the
``pytorch-converted`` and ``pytorch-operator`` suites (``model.onnx`` plus protobuf
tensors). This module collects the cases whose operators cnnkit converts, and prepares
each for a converter: the node tests feed every operand as a graph input, weights and
shapes included, whereas a converted network has them as initializers; so every input
but the data (input 0, and the tensor operands of elementwise, comparing, MatMul and
concatenating operators when they share its batch axis) becomes an initializer holding
the test's own value. A comparison's boolean output is matched by cnnkit's 0/1 mask.

Also a script: ``python tests/onnx_conformance.py`` prints every case's outcome and the
per-operator counts.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

RTOL, ATOL = 1e-4, 1e-5
# Operators whose extra inputs may stay graph inputs (tensors) rather than initializers.
_TENSOR_OPERANDS = {"Add", "Sub", "Mul", "Div", "Sum", "Mean", "Max", "Min", "Concat", "MatMul"}
_TENSOR_OPERANDS |= {"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal"}


@dataclass
class Case:
    name: str
    operator: str
    model: Any  # onnx.ModelProto
    data_sets: list[tuple[list[np.ndarray], list[np.ndarray]]]


def _label(model: Any) -> str:
    ops = sorted({n.op_type for n in model.graph.node if n.op_type != "Constant"})
    return "+".join(ops) or "Constant"


def _node_cases() -> list[Case]:
    import warnings

    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node.collect_testcases()
    from onnx import numpy_helper

    def array(v: Any) -> Any:
        if hasattr(v, "HasField"):
            return numpy_helper.to_array(v)
        return v if isinstance(v, (list, dict)) or v is None else np.asarray(v)

    def arrays(values: Any) -> list[Any]:
        return [array(v) for v in values]

    return [
        Case(c.name, _label(c.model), c.model, [(arrays(i), arrays(o)) for i, o in c.data_sets])
        for c in cases
        if c.kind == "node" and c.model is not None
    ]


def _disk_cases(suite: str) -> list[Case]:
    import onnx
    from onnx import numpy_helper

    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", suite)
    out = []
    for folder in sorted(glob.glob(os.path.join(root, "test_*"))):
        model = onnx.load(os.path.join(folder, "model.onnx"))
        data_sets = []
        for ds in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):

            def read(kind: str, ds: str = ds) -> list[np.ndarray]:
                arrays = []
                for f in sorted(glob.glob(os.path.join(ds, f"{kind}_*.pb"))):
                    t = onnx.TensorProto()
                    with open(f, "rb") as fh:
                        t.ParseFromString(fh.read())
                    arrays.append(numpy_helper.to_array(t))
                return arrays

            data_sets.append((read("input"), read("output")))
        out.append(Case(f"{suite}/{os.path.basename(folder)}", _label(model), model, data_sets))
    return out


def supported_cases() -> list[Case]:
    """Every case whose operators cnnkit.onnx lists as supported."""
    from cnnkit.onnx import supported_operators

    # Shape arithmetic that the importer folds but that is not an operator of the issue's
    # list: its cases compute on tensors and are not counted.
    supported = set(supported_operators()) - {"Range"}
    cases = _node_cases() + _disk_cases("pytorch-converted") + _disk_cases("pytorch-operator")
    return [
        c
        for c in cases
        if all(n.op_type in supported and n.domain in ("", "ai.onnx") for n in c.model.graph.node)
    ]


def prepare(case: Case, inputs: list[np.ndarray]) -> tuple[bytes, list[np.ndarray]]:
    """The case's model with its operand inputs turned into initializers, and the arrays
    still fed as inputs."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    graph = model.graph
    given = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    ops = {n.op_type for n in graph.node}
    first = np.asarray(inputs[0]) if inputs else None
    keep, fed = [], []
    for i, (info, array) in enumerate(zip(given, inputs)):
        array = np.asarray(array)
        tensor_operand = (
            i == 0
            or (
                ops <= _TENSOR_OPERANDS
                and first is not None
                and array.dtype.kind == "f"
                and array.ndim == first.ndim
                and array.ndim > 0
                and array.shape[0] == first.shape[0]
            )
        )  # fmt: skip
        if tensor_operand:
            keep.append(info)
            fed.append(array)
        else:
            graph.initializer.append(numpy_helper.from_array(array, info.name))
    del graph.input[:]
    graph.input.extend(keep)
    return model.SerializeToString(), fed


def run(case: Case) -> None:
    """Import the case's model and compare every data set's outputs; raises on failure."""
    import cnnkit.onnx

    for inputs, expected in case.data_sets:
        data, fed = prepare(case, inputs)
        model = cnnkit.onnx.load_model(data)
        got = model(fed if len(fed) > 1 else fed[0])
        got = got if isinstance(got, (list, tuple)) else [got]
        if len(got) != len(expected):
            raise AssertionError(f"{len(got)} outputs, expected {len(expected)}")
        for g, e in zip(got, expected):
            g = np.asarray(g.data if hasattr(g, "data") else g)
            if np.asarray(e).dtype == bool:  # a comparison: cnnkit's mask is exactly 0 or 1
                if not np.isin(g, (0, 1)).all():
                    raise AssertionError(f"a mask of values other than 0 and 1: {g}")
                g = g != 0
            np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)


if __name__ == "__main__":  # pragma: no cover - a report, not a test
    import collections
    import sys

    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for case in supported_cases():
        try:
            run(case)
            ok, why = True, ""
        except Exception as exc:
            ok, why = False, f"{type(exc).__name__}: {str(exc)[:300]}"
        counts[case.operator][1] += 1
        counts[case.operator][0] += ok
        if not ok or "-v" in sys.argv:
            print(f"{'PASS' if ok else 'FAIL'} {case.name} [{case.operator}] {why}")
    for op, (passed, total) in sorted(counts.items()):
        print(f"{op}: {passed}/{total}")
