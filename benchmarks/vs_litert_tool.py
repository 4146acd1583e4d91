"""Does `edgesmith bench` measure the model and not itself? Compare with LiteRT's own tool.

Runs ai-edge-litert's ``ai_edge_litert/tools/benchmark_litert_model.py`` (shipped in the
wheel) and ``edgesmith bench`` on the same models with the same threads, warm-up and run
counts, alternating which goes first, each in a fresh process, and prints the ratio of the
medians of their median latencies (target: within 5%). A third column times the bare native
invoke in a loop (nothing of either tool around it): the floor both should sit on.

The tool is run unmodified except for one thing: its results are rounded to 0.01 ms, which
is coarser than a small model's latency, so its module-level ``round`` is replaced by the
identity before its ``main()`` runs.

    python benchmarks/vs_litert_tool.py reports/bench-models/*.tflite --threads 1 --runs 200
    python benchmarks/vs_litert_tool.py model.tflite --gpu --swiftshader   # GPU path on SwiftShader

The tool drives LiteRT's CompiledModel API; ``edgesmith bench --backend litert`` drives the
Interpreter (both run the XNNPACK kernels on the CPU), ``--backend litert-gpu`` drives the
CompiledModel like the tool's ``--use_gpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_command import bench_command

TOOL = (
    "import sys; import ai_edge_litert.tools.benchmark_litert_model as tool; "
    "tool.round = lambda value, digits=None: value; "
    "sys.argv = ['benchmark_litert_model'] + sys.argv[1:]; tool.main()"
)


# The floor: the native invoke alone, in a bare loop, with nothing of either tool around it.
NATIVE = """
import statistics, sys, time
import numpy as np
path, threads, runs, warmup, gpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
if gpu:
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator as HA
    from ai_edge_litert.options import CpuOptions, Options
    model = CompiledModel.from_file(path, options=Options(hardware_accelerators=HA.GPU | HA.CPU,
                                                          cpu_options=CpuOptions(num_threads=threads)))
    ins, outs = model.create_input_buffers(0), model.create_output_buffers(0)
    li, lo = [b.capsule for b in ins], [b.capsule for b in outs]
    call = lambda: model._model.RunByIndex(0, li, lo)
else:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(path, num_threads=threads)
    interpreter.allocate_tensors()
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    call = interpreter._interpreter.Invoke
for _ in range(warmup):
    call()
clock, times = time.perf_counter_ns, []
for _ in range(runs):
    start = clock(); call(); times.append(clock() - start)
print(statistics.median(times) / 1e6)
"""


def native_median(model: Path, args: argparse.Namespace, env: dict[str, str]) -> float:
    command = [
        sys.executable,
        "-c",
        NATIVE,
        str(model),
        str(args.threads),
        str(args.runs),
        str(args.warmup),
        "1" if args.gpu else "0",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    try:  # the number is printed before teardown, whatever the exit status says
        return float(done.stdout.split()[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"native loop failed on {model}:\n{_errors(done.stderr)}") from None


def tool_median(model: Path, args: argparse.Namespace, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder, "tool.json")
        command = [
            sys.executable,
            "-c",
            TOOL,
            f"--model={model}",
            f"--num_threads={args.threads}",
            f"--num_runs={args.runs}",
            f"--warmup_runs={args.warmup}",
            f"--result_json={result}",
        ]
        if args.gpu:
            command.append("--use_gpu")
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
        if done.returncode != 0 or not result.is_file():
            raise SystemExit(f"benchmark_litert_model failed on {model}:\n{_errors(done.stderr)}")
        return float(json.loads(result.read_text())["latency"]["median_ms"])


def edgesmith_median(model: Path, args: argparse.Namespace, env: dict[str, str]) -> float:
    backend = args.backend or ("litert-gpu" if args.gpu else "litert")
    command = bench_command(sys.executable, model, backend, args)
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    if done.returncode != 0:
        raise SystemExit(f"edgesmith bench failed on {model}:\n{_errors(done.stderr)}")
    return float(json.loads(done.stdout)["latency_ms"]["p50"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=lambda p: Path(p).resolve(), help=".tflite files")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per model")
    parser.add_argument("--gpu", action="store_true", help="the tool's --use_gpu vs litert-gpu")
    parser.add_argument("--swiftshader", action="store_true", help="use SwiftShader for --gpu")
    parser.add_argument("--backend", help="edgesmith backend (default: litert, or litert-gpu)")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.swiftshader:
        from edgesmith.runtime.vulkan import use_swiftshader

        icd = use_swiftshader(env)
        # The tool's process has no edgesmith to preload Vulkan: point the loader search at
        # Chromium's copy when the system has none.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(icd.parent), env.get("LD_LIBRARY_PATH")])
        )

    print(
        f"threads {args.threads}, runs {args.runs}, warm-up {args.warmup}, {args.rounds} alternating rounds"
    )
    print(
        f"{'model':32} {'tool ms':>9} {'edgesmith ms':>12} {'native ms':>10} {'es/tool':>8} {'es/native':>9}"
    )
    ratios, floors = [], []
    measures = (tool_median, edgesmith_median, native_median)
    for model in args.models:
        found: dict = {m: [] for m in measures}
        try:
            for round_ in range(args.rounds):
                order = measures if round_ % 2 == 0 else measures[::-1]  # alternate the first
                for measure in order:
                    found[measure].append(measure(model, args, env))
        except SystemExit as failed:  # e.g. the tool's CompiledModel refuses variable tensors
            reasons = re.findall(r"ERROR: \[[^\]]+\] (\S.*)", str(failed)) or [str(failed)]
            print(f"{model.name:32} skipped: {reasons[0].strip()[:150]}")
            continue
        tool, ours, native = (statistics.median(found[m]) for m in measures)
        ratios.append(ours / tool)
        floors.append(ours / native)
        flag = "" if abs(ours / tool - 1) <= 0.05 else "  *"
        print(
            f"{model.name:32} {tool:9.4f} {ours:12.4f} {native:10.4f} "
            f"{ours / tool:8.3f} {ours / native:9.3f}{flag}"
        )
    print(
        f"{'geometric mean':32} {'':9} {'':12} {'':10} "
        f"{statistics.geometric_mean(ratios):8.3f} {statistics.geometric_mean(floors):9.3f}"
    )
    print("* edgesmith/tool outside 5%")


def _errors(stderr: str) -> str:
    # LiteRT logs INFO lines by the hundred; keep what says what went wrong.
    lines = [line for line in stderr.splitlines() if not line.startswith(("INFO", "I0000"))]
    return "\n".join(lines[-25:])


if __name__ == "__main__":
    main()
