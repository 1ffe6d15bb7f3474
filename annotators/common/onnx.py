"""One way to open an ONNX Runtime session on CPU, for every ONNX model in the project.

- `intra_op_num_threads` from the stage's placement (pipeline/resources.py), one inter-op thread;
- no spinning: an idle pool does not burn the core another stage is using;
- no CPU memory arena: the arena keeps the largest workspace a session ever needed (DNSMOS on a long segment
  held ~190 MiB after its first call); without it the buffers go back after each run (bench/README.md,
  "Memory"), at a cost within noise for these small models.
"""

from __future__ import annotations

from pathlib import Path


def cpu_session(path: str | Path, num_threads: int = 1, optimize: bool = True):
    """An onnxruntime.InferenceSession on the CPU provider; `optimize=False` disables graph optimisations
    (a Q/DQ graph run as written)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, num_threads)
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
