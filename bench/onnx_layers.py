"""Per-layer time of an imported torchvision network, cnnkit against onnxruntime's profile.

    python bench/onnx_layers.py resnet18 1 [repeats] [threads]

cnnkit: each step of the model's inference plan (its kernel shortcut, or the layer's
``call``) is timed over ``repeats`` whole-network calls, and each step's fastest call is
kept, as onnxruntime's profile is read (the breakdown of the fastest whole call mixed in
steps that a descheduled thread had held up on a loaded machine). At one thread
(the default) in thread CPU time, steadier than wall time on a shared machine; at more
threads in wall time, which is only meaningful on an idle machine. onnxruntime: its own
per-node profile (``enable_profiling``), at the same thread count, the fastest run of each
node. Layer names follow the ONNX node names, so the two lists can be matched by eye
(onnxruntime fuses a Conv with its Relu and names the fused node by its output).
Needs torch and torchvision to export the network (bench/cases/onnx_models.py).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import onnxruntime as ort
    from cases import onnx_models

    import cnnkit
    import cnnkit.autograd as ag
    import cnnkit.onnx

    name, batch = sys.argv[1], int(sys.argv[2])
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    clock = time.thread_time if threads == 1 else time.perf_counter
    cnnkit.set_num_threads(threads)
    blob = onnx_models._network(name)[1]
    model = cnnkit.onnx.load_model(blob)
    x = onnx_models.images(batch)[0]
    with ag.no_grad():
        model(x)  # builds the plan, whose steps are wrapped below

    current: dict[tuple[str, str], float] = {}

    def timed(call, key):
        def run(*args, **kwargs):
            start = clock()
            out = call(*args, **kwargs)
            current[key] = current.get(key, 0.0) + clock() - start
            return out

        return run

    # The plan's shortcuts, and ``call`` only for the layers without one: a ``call`` set on
    # a layer turns its shortcut off, and with it the residual folding the benchmark runs
    # with. So a plain Add that a convolution folds (it has no shortcut of its own) is not
    # wrapped either: its time is in the convolution's.
    steps = model._steps()
    folded = {id(step.residual) for step in steps if step.residual is not None}
    for step in steps:
        key = (step.layer.name, type(step.layer).__name__)
        if id(step) in folded:
            continue
        if step.fast is not None:
            step.fast = timed(step.fast, key)
            if step.residual_fast is not None:
                step.residual_fast = timed(step.residual_fast, key)
            if step.stem is not None:  # with the max pool after it, when folded
                step.stem = timed(step.stem, key)
            if getattr(step, "into", None) is not None:  # writes into a concat's output
                step.into.write = timed(step.into.write, key)
        elif "call" not in step.layer.__dict__:
            step.layer.call = timed(step.layer.call, key)
    load_before = os.getloadavg()[0]
    best_total, best = float("inf"), {}
    for _ in range(repeats):
        current.clear()
        start = clock()
        with ag.no_grad():
            model(x)
        best_total = min(best_total, clock() - start)
        for key, seconds in current.items():
            best[key] = min(best.get(key, seconds), seconds)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    ort_total = float("inf")
    for _ in range(repeats):
        start = clock()
        session.run(None, {"input": x})
        ort_total = min(ort_total, clock() - start)
    profile = session.end_profiling()
    nodes: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    with open(profile) as f:
        for event in json.load(f):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                key = (event["name"][: -len("_kernel_time")], event["args"].get("op_name", ""))
                nodes[key].append(event["dur"] / 1e3)
    os.remove(profile)

    print(
        f"{name} batch {batch}, {threads} thread(s): cnnkit {best_total * 1e3:.1f} ms, "
        f"onnxruntime {ort_total * 1e3:.1f} ms (load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after)"
    )
    for (layer_name, kind), seconds in sorted(best.items(), key=lambda kv: -kv[1]):
        if seconds >= 5e-5:
            print(f"  cnnkit       {layer_name:48s} {kind:24s} {seconds * 1e3:8.2f} ms")
    for (node, op), times in sorted(nodes.items(), key=lambda kv: -min(kv[1])):
        if min(times) >= 0.05:
            print(f"  onnxruntime  {node:48s} {op:24s} {min(times):8.2f} ms")


if __name__ == "__main__":
    main()
