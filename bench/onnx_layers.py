"""Per-layer time of an imported torchvision network, cnnkit against onnxruntime's profile.

    python bench/onnx_layers.py resnet18 1 [repeats]

One thread. cnnkit: each layer's ``call`` is timed in thread CPU time (the machine is
shared: CPU time is steadier than wall time) and the best of ``repeats`` whole-network
calls is kept. onnxruntime: its own per-node profile (``enable_profiling``), the fastest
run of each node. Layer names follow the ONNX node names, so the two lists can be matched
by eye (onnxruntime fuses a Conv with its Relu and names the fused node by its output).
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
    cnnkit.set_num_threads(1)
    blob = onnx_models._network(name)[1]
    model = cnnkit.onnx.load_model(blob)
    x = onnx_models.images(batch)[0]

    current: dict[tuple[str, str], float] = {}
    for layer in model.layers:
        key = (layer.name, type(layer).__name__)

        def timed(*args, _call=layer.call, _key=key, **kwargs):
            start = time.thread_time()
            out = _call(*args, **kwargs)
            current[_key] = time.thread_time() - start
            return out

        layer.call = timed
    best_total, best = float("inf"), {}
    for _ in range(repeats):
        current.clear()
        start = time.thread_time()
        with ag.no_grad():
            model(x)
        total = time.thread_time() - start
        if total < best_total:
            best_total, best = total, dict(current)

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = True
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    ort_total = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        session.run(None, {"input": x})
        ort_total = min(ort_total, time.thread_time() - start)
    profile = session.end_profiling()
    nodes: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    with open(profile) as f:
        for event in json.load(f):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                key = (event["name"][: -len("_kernel_time")], event["args"].get("op_name", ""))
                nodes[key].append(event["dur"] / 1e3)
    os.remove(profile)

    print(
        f"{name} batch {batch}: cnnkit {best_total * 1e3:.1f} ms, "
        f"onnxruntime {ort_total * 1e3:.1f} ms"
    )
    for (layer_name, kind), seconds in sorted(best.items(), key=lambda kv: -kv[1]):
        if seconds >= 5e-5:
            print(f"  cnnkit       {layer_name:48s} {kind:24s} {seconds * 1e3:8.2f} ms")
    for (node, op), times in sorted(nodes.items(), key=lambda kv: -min(kv[1])):
        if min(times) >= 0.05:
            print(f"  onnxruntime  {node:48s} {op:24s} {min(times):8.2f} ms")


if __name__ == "__main__":
    main()
