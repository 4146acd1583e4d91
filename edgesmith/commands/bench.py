"""``edgesmith bench``: latency, memory and accuracy of a .tflite or .onnx file. TF-free.

The handler imports only ``edgesmith.runtime`` (NumPy and the runtimes), never TensorFlow,
so it runs on a board with the base install.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from edgesmith.commands import command
from edgesmith.core.errors import ConfigError
from edgesmith.core.tables import DEFAULT_RUNS, DEFAULT_WARMUP

JSON_HELP = (
    "write the result as JSON to OUT ('-' for stdout, the table then goes to stderr): one "
    "ResultRecord object when one backend ran, a list of them when several did (backends that "
    "failed are included with 'error' set; those that auto skipped are not)"
)


def register(commands: Any) -> None:
    sub = command(
        commands,
        "bench",
        _bench,
        "benchmark latency, memory and accuracy of a .tflite / .onnx file (TF-free)",
        "Benchmark a model file on one or more backends: load time, first inference,\n"
        "warm-up, then timed runs (mean, std, min, max, p50, p90, p99, throughput), peak\n"
        "resident memory, file size and, with --eval, accuracy at batch 1 with quantized\n"
        "inputs and outputs handled by their scale and zero point. Each backend runs in its\n"
        "own worker process, so one backend's memory or crash does not touch another's.\n"
        "Needs no TensorFlow.\n\n"
        "backends:\n"
        "  litert          LiteRT Interpreter on the CPU (XNNPACK unless --no-xnnpack)\n"
        "  litert-gpu      LiteRT GPU accelerator (WebGPU over Vulkan), CPU fallback;\n"
        "                  --swiftshader for a software device where there is no GPU\n"
        "  tflite-runtime  the tflite_runtime Interpreter (numpy<2 boards)\n"
        "  onnxruntime     ONNX Runtime: CPU, CUDA / TensorRT when present\n"
        "  edgetpu         the Edge TPU delegate (libedgetpu.so.1)\n"
        "  external:PATH   any TFLite external delegate library\n"
        "  auto            every backend available here for the file's format (default)\n\n"
        "Exit status 2 when the file is bad or a backend asked for by name could not run.",
        "edgesmith bench cnn-digits.tflite",
        "edgesmith bench kws-int8.tflite --eval kws-test.npz --backend litert --threads 4 --json out.json",
        "edgesmith bench model.tflite --backend litert --backend litert-gpu --swiftshader",
        "edgesmith bench model.onnx --backend onnxruntime --runs 500 --warmup 50",
        "edgesmith bench lstm.tflite --shape serving_default_x:0=1,49,10 --state serving_default_h:0",
        "edgesmith bench model_edgetpu.tflite --backend edgetpu --delegate-option device=usb:0",
    )
    sub.add_argument("file", metavar="FILE", help="the .tflite or .onnx model file")
    sub.add_argument(
        "--backend",
        "-b",
        action="append",
        metavar="B",
        help="backend to run, repeatable or comma-separated (default: auto)",
    )
    sub.add_argument("--eval", metavar="FILE.npz", help="labelled eval set (x, y) for accuracy")
    sub.add_argument(
        "--data",
        metavar="PATH",
        help="your data set for accuracy, instead of --eval: an .npz (x_test/y_test, or x/y "
        "split by --seed as compress and convert split it) or a folder of class folders of "
        "images (resized to the file's input; its test split is used)",
    )
    sub.add_argument(
        "--image-scale",
        type=float,
        metavar="S",
        help="--data images: multiply pixels (0-255) by S, as given to convert",
    )
    sub.add_argument(
        "--runs",
        type=int,
        default=DEFAULT_RUNS,
        metavar="N",
        help=f"timed runs (default: {DEFAULT_RUNS})",
    )
    sub.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        metavar="N",
        help=f"warm-up runs (default: {DEFAULT_WARMUP})",
    )
    sub.add_argument(
        "--min-time",
        type=float,
        default=0.0,
        metavar="S",
        help="keep timing until S seconds have passed, after the N runs (default: 0)",
    )
    sub.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="CPU threads (default: 1, like LiteRT's own benchmark tool; give the board's "
        "core count to measure multi-threaded inference)",
    )
    sub.add_argument("--json", metavar="OUT", help=JSON_HELP)
    sub.add_argument(
        "--no-xnnpack",
        dest="xnnpack",
        action="store_false",
        help="litert / tflite-runtime / edgetpu: builtin CPU kernels instead of XNNPACK",
    )
    sub.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=D,D,...",
        help="shape of a dynamic input (by name or index; a bare D,D,... for a single input); "
        "other dynamic dimensions run at 1, or at the eval set's sample shape",
    )
    sub.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="NAME",
        help="an input that holds recurrent state and is fed zeros (inputs named like "
        "*state*, *hidden*, *cell* are found without it)",
    )
    sub.add_argument(
        "--swiftshader",
        action="store_true",
        help="litert-gpu: use SwiftShader's software Vulkan device from Debian's chromium "
        "package (for machines without a GPU; its latency is labelled, not GPU latency)",
    )
    sub.add_argument(
        "--gpu-fp32", action="store_true", help="litert-gpu: compute in float32 instead of float16"
    )
    sub.add_argument(
        "--delegate-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option passed to the edgetpu or external:PATH delegate, repeatable",
    )
    sub.add_argument(
        "--providers",
        metavar="P,P",
        help="onnxruntime execution providers in order (default: TensorRT, CUDA when present, then CPU)",
    )
    sub.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    sub.add_argument(
        "--profile",
        action="store_true",
        help="also profile op by op (litert, onnxruntime): adds op_profile (per op in execution "
        "order: index, op, input dtypes, delegate that ran it, ms, share) and op_profile_by_type "
        "to the record; the profiler's own times are put on the scale of the unprofiled latency "
        "(op_profile_calibration says how); other backends say in the notes why there is none",
    )
    sub.add_argument(
        "--reference",
        metavar="REF",
        help="time FILE in alternating blocks with REF (its float32 file, say; same format) "
        "in one process: the record's paired field holds REF's latency from the same window "
        "and the speedup, which machine drift between separate runs cannot fake or hide",
    )
    sub.add_argument(
        "--in-process",
        action="store_true",
        help="run in this process instead of one worker process per backend (peak memory is "
        "then shared by all backends, and a native crash ends edgesmith)",
    )
    sub.add_argument(
        "--timeout", type=float, metavar="S", help="give up on a backend after S seconds"
    )
    _device_arguments(sub)


def _device_arguments(sub: argparse.ArgumentParser) -> None:
    """--device and its settings: bench on a board over SSH (docs: README, On your board)."""
    sub.add_argument(
        "--device",
        metavar="ssh://USER@HOST[:PORT]",
        help="run the bench on this board over SSH (your ssh config, keys and known_hosts "
        "apply; the board needs the base install: pip install edgesmith); records get "
        "device set (default: local, this machine)",
    )
    sub.add_argument(
        "--ssh-config",
        metavar="FILE",
        help="--device: an OpenSSH config file instead of ~/.ssh/config",
    )
    sub.add_argument(
        "--device-python",
        metavar="PATH",
        help="--device: the Python that runs edgesmith there (default: python3)",
    )
    sub.add_argument(
        "--install",
        action="store_true",
        help="--device: when edgesmith is missing or another version there, build a wheel of "
        "this checkout and pip-install it into the device's Python",
    )


def _pairs(values: list[str], flag: str, *, bare: bool = False) -> dict[str, str]:
    from edgesmith.core.errors import ConfigError

    pairs = {}
    for value in values:
        key, sep, rest = value.rpartition("=")
        if not sep and bare:
            key, rest = "", value
        elif not sep or not key:
            raise ConfigError(f"{flag} {value}", expected="KEY=VALUE")
        pairs[key] = rest
    return pairs


def _shapes(values: list[str]) -> dict[str, tuple[int, ...]]:
    from edgesmith.core.errors import ConfigError

    shapes = {}
    for key, dims in _pairs(values, "--shape", bare=True).items():
        try:
            shapes[key] = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise ConfigError(
                f"--shape {key + '=' if key else ''}{dims}",
                expected="NAME=D,D,... with integer sizes",
            ) from None
    return shapes


def _fmt_ms(value: float | None) -> str | None:
    if value is None:
        return None
    for limit, digits in ((100, 0), (10, 1), (1, 2), (0.01, 3)):
        if value >= limit:
            return f"{value:.{digits}f}"
    return f"{value:.4f}"


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit, scale in (("MB", 2**20), ("kB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _bench(args: argparse.Namespace) -> int:
    from edgesmith.core.formatting import format_shape
    from edgesmith.runtime.modelfile import inspect_model

    info = inspect_model(args.file)
    options: dict[str, Any] = {
        "threads": 1 if args.threads is None else args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "min_time": args.min_time,
        "shapes": _shapes(args.shape),
        "state": args.state,
        "seed": args.seed,
        "xnnpack": args.xnnpack,
        "swiftshader": args.swiftshader,
        "gpu_fp32": args.gpu_fp32,
        "delegate_options": _pairs(args.delegate_option, "--delegate-option"),
    }
    if args.profile:
        options["profile"] = True
    if args.reference:
        options["reference"] = args.reference
    if args.providers:
        options["providers"] = [p.strip() for p in args.providers.split(",") if p.strip()]
    shown = ", ".join(f"{t.name} {format_shape(t.shape_signature)} {t.dtype}" for t in info.inputs)
    with tempfile.TemporaryDirectory(prefix="edgesmith-bench-") as scratch:
        if args.data:
            if args.eval:
                raise ConfigError("--data and --eval", expected="one of them")
            args.eval = _eval_from_data(args, info, Path(scratch))
        return _bench_file(args, info, shown, options)


def _eval_from_data(args: argparse.Namespace, info: Any, scratch: Path) -> str:
    """The test split of ``--data``, shaped for the file's input, as an eval-set file."""
    import numpy as np

    from edgesmith.console import err
    from edgesmith.zoo.userdata import is_user_data, load_user_data

    if not is_user_data(args.data):
        raise ConfigError(
            f"--data {args.data}: not an .npz file nor a folder",
            expected="your data set as an .npz or a folder of class folders of images",
            fix="for a zoo data set write its eval set first: edgesmith zoo export-eval NAME "
            "--out test.npz, then pass --eval test.npz",
        )
    spec = info.inputs[0]
    shape = [None if d is None or d < 0 else int(d) for d in spec.shape_signature[1:]]
    dtype = "int32" if str(spec.dtype) in ("int32", "int64") else "float32"
    data = load_user_data(
        args.data,
        input_shape=shape,
        input_dtype=dtype,
        image_scale=args.image_scale,
        seed=args.seed,
    )
    for skipped in data.skipped:
        err.print(f"[yellow]skipped[/] {skipped}", highlight=False, soft_wrap=True)
    if data.skipped:
        err.print(f"{len(data.skipped)} unreadable file(s) skipped in {args.data}", highlight=False)
    file = scratch / "eval.npz"
    np.savez(file, x=data.x_test, y=data.y_test, class_names=np.asarray(data.class_names))
    return str(file)


def _bench_file(args: argparse.Namespace, info: Any, shown: str, options: dict[str, Any]) -> int:
    from rich.table import Table

    from edgesmith.console import err, out
    from edgesmith.runtime.backend_plan import BackendPlan
    from edgesmith.runtime.bench import bench_file

    err.print(
        f"{info.path}: {info.format}, {_size(info.size_bytes)}, {info.ops} ops; "
        f"input{'s' if len(info.inputs) != 1 else ''} {shown}; "
        + (f"eval set {args.data or args.eval}" if args.eval else "random inputs"),
        highlight=False,
        soft_wrap=True,
    )

    def on_plan(plan: BackendPlan) -> None:
        if plan.skip is not None and not plan.explicit:
            err.print(
                f"[dim]skipped {plan.backend}: {plan.skip}[/]", highlight=False, soft_wrap=True
            )
        elif plan.skip is None:
            err.print(f"[dim]running {plan.backend} ...[/]", highlight=False)

    records = _runner(args, bench_file)(
        args.file,
        args.backend or ["auto"],
        isolate=not args.in_process,
        eval_set=args.eval,
        on_plan=on_plan,
        timeout=args.timeout,
        **options,
    )
    rows = []
    for rec in records:
        if rec.error:
            continue
        lat = rec.latency_ms or {}
        software = (rec.environment.get("runtime") or {}).get("device_kind") == "software"
        rows.append(
            [
                rec.backend + (" (software Vulkan)" if software else ""),
                rec.threads,
                _fmt_ms(lat.get("init")),
                _fmt_ms(lat.get("first")),
                _fmt_ms(lat.get("p50")),
                _fmt_ms(lat.get("p90")),
                _fmt_ms(lat.get("p99")),
                f"{_fmt_ms(lat.get('mean'))} ± {_fmt_ms(lat.get('std'))}",
                f"{rec.throughput_per_s:,.0f}" if rec.throughput_per_s else None,
                f"{rec.peak_rss_mb:.1f}" if rec.peak_rss_mb is not None else None,
                f"{100 * rec.accuracy:.2f}%" if rec.accuracy is not None else None,
                {True: "yes", False: "no"}.get(rec.fully_accelerated),
            ]
        )
    to_stdout = args.json == "-"
    console = err if to_stdout else out
    if rows:
        columns = [
            "backend", "threads", "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
            "mean ± std ms", "per s", "peak RSS MB", "accuracy", "fully accel.",
        ]  # fmt: skip
        runs = next(r.environment.get("bench", {}).get("runs") for r in records if not r.error)
        title = f"edgesmith bench {info.path.name} ({runs} timed runs per backend)"
        grid = Table(title=title, title_justify="left")
        for column in columns:
            first = column == "backend"
            grid.add_column(column, justify="left" if first else "right", overflow="fold")
        for row in rows:
            grid.add_row(*("-" if cell is None else str(cell) for cell in row))
        console.print(grid)
    for rec in records:
        for note in rec.notes if not rec.error else []:
            err.print(f"[yellow]{rec.backend}:[/] {note}", highlight=False, soft_wrap=True)
    for rec in records:
        if rec.error:
            err.print(f"[bold red]error:[/] {rec.error}", highlight=False, soft_wrap=True)
    if args.json:
        data = [r.to_dict() for r in records]
        payload = data[0] if len(data) == 1 else data
        if to_stdout:
            print(json.dumps(payload, indent=2, default=_jsonable))
        else:
            from edgesmith.core.fileio import write_json

            write_json(args.json, payload)
            err.print(f"wrote {len(data)} record{'s' if len(data) != 1 else ''} to {args.json}")
    return 2 if any(r.error for r in records) else 0


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def _runner(args: argparse.Namespace, bench_file: Any) -> Any:
    """``bench_file`` here (records get device local), or its stand-in on ``--device``."""
    from edgesmith.runtime.device_info import local_device

    if args.device in (None, "local"):
        if args.ssh_config or args.device_python or args.install:
            raise ConfigError(
                "--ssh-config, --device-python or --install without --device",
                expected="--device ssh://user@host with them",
            )

        def here(*call: Any, **options: Any) -> list[Any]:
            return [r.updated(device=local_device()) for r in bench_file(*call, **options)]

        return here
    import dataclasses
    import functools

    from edgesmith.console import err
    from edgesmith.devices.device_spec import DEFAULT_TIMEOUT, parse_device
    from edgesmith.devices.remote_bench import RemoteDevice

    spec = parse_device(args.device, where="--device")
    if spec.is_local:  # a mapping cannot come from the command line; this is a plain name
        raise ConfigError(f"--device {args.device}", expected="ssh://user@host[:port]")
    backends = len(args.backend or ["auto"]) * 3  # auto may run a few
    spec = dataclasses.replace(
        spec,
        python=args.device_python,
        ssh_config=args.ssh_config,
        timeout=DEFAULT_TIMEOUT if args.timeout is None else args.timeout * backends + 120,
    )
    device = RemoteDevice(spec)
    info = device.check(install=args.install)
    err.print(
        f"device {spec.name} ({spec.ssh}): {info['board'] or info['cpu']}, {info['cores']} "
        f"cores, {info['memory_mb']} MB, {info['os']}, Python {info['python']}",
        highlight=False,
        soft_wrap=True,
    )
    return functools.partial(device.bench, install=args.install)
