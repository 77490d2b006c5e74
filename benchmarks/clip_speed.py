"""End to end: a blurred JPEG in, an MP4 out, timed step by step; onnxruntime beside torch; the network's
multiply-accumulate rate beside the CPU's; the peak memory of the whole process tree; this tree's code
beside a base commit's.

    python benchmarks/clip_speed.py [--weights PATH] [--threads 2] [--base REV] [--main REV,REV]
                                    [--parts engines,encode,720p,24mp] [--skip-base]

Every figure is measured in this one run, and the machine may be shared (training runs beside it): read
them as ratios within the run, not as absolute speeds. Parts (all by default):
  engines: 1280x720 JPEG -> 7-frame MP4 (`--frames 7`, ping-pong, 3 loops), each case in a fresh process:
          the whole command line (`python -m blur2clip`; best and median of 5 rounds, the cases in turn)
          with --engine onnx, --engine torch and the `--main` commits (2645e26: the torch-only main the
          speed target was set against; e33647d: the last before onnxruntime); then each engine's process split into start-up
          (interpreter, imports, weights), decode, network, blending (tiles, alignment, conversion) and
          encode; the import time of each heavy module alone; the network's MACs/s (model.count_macs over
          one whole 720p pass, best of 3) beside the CPU's peak (a 4096x4096 fp32 matrix product in torch,
          the same threads); then onnxruntime in the default tiles as the photo command runs it, one tile
          at a time on every thread beside several side by side (OnnxNet.lanes), per MAC of the photo and
          per MAC computed (the tiles' overlaps included).
  encode: the 720p clip's frames encoded as the base commit did (the played sequence fed to x264 once per
          loop) and as now (encoded once, then copied `loops` times by ffmpeg's stream copy): time, size
          and PSNR against the frames; then x264 presets and rate factors on the sequence, to choose by.
  720p:   a 1280x720 JPEG -> MP4 (24 frames), base and now, each in a fresh process: time per step, size;
  24mp:   a 6000x4000 JPEG -> MP4, base and now, and now with --still (the network at full size): peak
          memory of the process tree (Python and its ffmpeg children, their RSS summed, polled from /proc
          every 20 ms; floor 2 GB), time, the MP4's size and H.264 level (5.1 at most for 4K players).
A base commit's package is exported with `git archive` into a temporary folder and put first on the
child's PYTHONPATH. The photos are made in a temporary folder (a real blurred GoPro frame when ../shared
has one, else a Kodak photo or synthetic texture, scaled up) and deleted afterwards. Without shipped
weights a random ModelConfig() network stands in (same cost).
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
import threading
import time
from pathlib import Path

import numpy as np

from machine import cpu_name  # this folder: the first on sys.path of a script

# Idle OpenMP threads sleep instead of spinning (see model_speed.py): fair figures on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
FLOOR_24MP_GB = 2.0
LOOPS = 3
BASE = "2645e26"  # the last commit that encoded every loop and wrote MP4 clips at full size
# The mains the whole process is compared with: 2645e26, the main the speed target was set against (torch, every
# loop encoded; its floor is 0.4x of this), and e33647d, the last commit before onnxruntime (torch only).
MAINS = "2645e26,e33647d"
ROUNDS = 5  # whole-process runs of each case, taken in turn
HEAVY = ("torch", "onnxruntime", "numpy", "PIL", "imageio_ffmpeg")
PEAK_N = 4096  # side of the matrices whose product measures the CPU's peak


def make_photo(path: Path, w: int, h: int) -> Path:
    """A JPEG of WxH: a real blurred photo if there is one, else a sharp one, else texture."""
    from PIL import Image

    candidates = sorted((SHARED / "blurred" / "gopro_blurred").glob("*.png")) + sorted(
        (SHARED / "blurred" / "gopro_blurred").glob("*.jpg")
    ) + sorted((SHARED / "photos" / "kodak24").glob("*.png"))
    if candidates:
        img = Image.open(candidates[0]).convert("RGB").resize((w, h), Image.LANCZOS)
    else:
        rng = np.random.default_rng(0)
        img = Image.fromarray((rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)).resize((w, h))
    img.save(path, quality=90)
    return path


# ------------------------------------------------------------------------------------ process-tree memory


def _tree(root: int) -> list[int]:
    """root and all its descendants, from /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreePeak(threading.Thread):
    """Polls the summed RSS of a process and its descendants until stopped; peaks in bytes."""

    def __init__(self, pid: int, every: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.every, self.stop = pid, every, threading.Event()
        self.peak = self.own = self.children = 0  # the tree's, the process's own, its descendants'

    def run(self) -> None:
        while not self.stop.is_set():
            own, children = _rss(self.pid), sum(_rss(p) for p in _tree(self.pid)[1:])
            self.peak = max(self.peak, own + children)
            self.own, self.children = max(self.own, own), max(self.children, children)
            self.stop.wait(self.every)


# ------------------------------------------------------------------------------------------- the cases


def run_case(photo: Path, weights: str | None, threads: int, still: bool = False) -> dict:
    """Runs in the child process: load the extractor (the weights as the command line does: onnxruntime
    where the tree has it; a random network when there are none), make the clip (and with `still` the
    full-size middle frame as a JPEG: the network then runs at the photo's size), report times and sizes."""
    sys.path.insert(0, str(HERE))
    from model_speed import load_network

    import blur2clip
    from blur2clip.extract import Extractor
    from blur2clip.job import make_clip

    t = time.perf_counter()
    try:
        extractor = Extractor(weights, device="cpu", threads=threads)
        source = f"weights {weights or 'default'}, engine {getattr(extractor, 'engine', 'torch')}"
    except blur2clip.WeightsError:
        model, source = load_network(weights)
        extractor = Extractor(model=model, device="cpu", threads=threads)
    load = time.perf_counter() - t
    out = photo.with_name(f"{photo.stem}-{os.getpid()}.mp4")
    kept = photo.with_name(f"{photo.stem}-{os.getpid()}-still.jpg") if still else None
    res = make_clip(photo, out, extractor=extractor, overwrite=True, loops=LOOPS, still=kept)
    stream, level = mp4_stream(out)
    return {"package": str(Path(blur2clip.__file__).parent), "source": source,
            "size": f"{res.width}x{res.height}", "frames": res.frames, "load": load, **res.timings,
            "total": res.seconds, "tile": extractor.tile, "overlap": extractor.overlap,
            "mp4_mb": out.stat().st_size / 2**20, "mp4": stream, "level": level}


def mp4_stream(path: Path) -> tuple[str, float]:
    """(the video stream's size, as `ffmpeg -i` says it; the H.264 level, from the MP4's avcC box)."""
    import imageio_ffmpeg

    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True).stderr
    size = re.search(r"Video:.*?, (\d+x\d+)", info).group(1)
    data = path.read_bytes()
    at = data.find(b"avcC")
    return size, data[at + 7] / 10


def run_child(photo: Path, args, package: Path | None, still: bool = False) -> dict:
    """One case in a fresh process (the base commit's package first on its path when given), with the
    peak memory of its process tree."""
    cmd = [sys.executable, __file__, "--case", str(photo), "--threads", str(args.threads)]
    cmd += ["--still"] if still else []
    if args.weights:
        cmd += ["--weights", args.weights]
    env = dict(os.environ)
    if package is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(package), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watch = TreePeak(proc.pid)
    watch.start()
    stdout, stderr = proc.communicate()
    watch.stop.set()
    watch.join()
    if proc.returncode:
        raise SystemExit(f"case {photo.name} failed:\n{stderr}")
    r = json.loads(stdout.strip().splitlines()[-1])
    r["process"], r["tree_gb"] = time.perf_counter() - t, watch.peak / 2**30
    r["python_gb"], r["ffmpeg_gb"] = watch.own / 2**30, watch.children / 2**30
    return r


def export_base(rev: str, into: Path) -> Path:
    """The package as it was at `rev`, with the weights shipped beside it then, extracted under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "blur2clip", "weights"], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


# ------------------------------------------------------------------------------------ onnxruntime vs torch


def engine_case(photo: Path, engine: str, weights: str | None, threads: int) -> dict:
    """Runs in a fresh child process, as the command line does: the extractor made once the photo is
    read (so its load is in the clip's time), every network pass timed apart from the blending."""
    from blur2clip.extract import Extractor
    from blur2clip.job import ClipOptions, make_clip

    network = []  # (start, end) of every pass; passes side by side overlap (OnnxNet.lanes)

    class Timed:  # the engine's network, timed per pass
        def __init__(self, net):
            self.net = net

        def __getattr__(self, name):
            return getattr(self.net, name)

        def __call__(self, tiles, **kw):
            t = time.perf_counter()
            out = self.net(tiles, **kw)
            network.append((t, time.perf_counter()))
            return out

    def make() -> Extractor:
        ex = Extractor(weights, device="cpu", threads=threads, engine=engine)
        ex.net = Timed(ex.net)
        return ex

    out = photo.with_name(f"{photo.stem}-{engine}-{os.getpid()}.mp4")
    res = make_clip(photo, out, ClipOptions(frames=7, loops=LOOPS), extractor=make, overwrite=True)
    t, busy = res.timings, _union(network)
    return {"torch_loaded": "torch" in sys.modules, "load": t["load"], "decode": t["decode"],
            "network": busy, "blend": t["model"] - busy, "encode": t["encode"], "clip": res.seconds}


def _union(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) spans."""
    total, reach = 0.0, float("-inf")
    for a, b in sorted(spans):
        total += max(0.0, b - max(a, reach))
        reach = max(reach, b)
    return total


def cli_seconds(photo: Path, cases: dict[str, tuple[list[str], Path | None]], rounds: int = ROUNDS
                ) -> dict[str, list[float]]:
    """Wall times of `python -m blur2clip PHOTO -o ... ARGS` in fresh processes, for each case (its ARGS
    and the package put first on its path, None: this tree's): every case once per round, round after
    round, so a shared machine whose speed drifts slows every case alike."""
    out = photo.with_name(f"{photo.stem}-cli.mp4")
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (args, package) in cases.items():
            env = dict(os.environ)
            if package is not None:
                env["PYTHONPATH"] = os.pathsep.join([str(package), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "blur2clip", str(photo), "-o", str(out), "--overwrite", "-q",
                            *args], check=True, env=env, cwd=photo.parent, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t)
    return times


def import_seconds(module: str, repeats: int = 3) -> float:
    """Best time to import `module` alone in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(repeats))


def macs_case(weights: str | None, threads: int) -> dict:
    """Runs in a child: one whole 1280x720 pass per engine (best of 3) against the network's MACs, and the
    CPU's peak from a large fp32 matrix product, all on `threads` threads."""
    import torch

    sys.path.insert(0, str(HERE))
    from model_speed import load_network

    from blur2clip.extract import Extractor, tile_spans
    from blur2clip.model import count_macs

    torch.set_num_threads(threads)
    model, _ = load_network(weights)
    macs = count_macs(model, 720, 1280)
    image = np.random.default_rng(0).random((1, 720, 1280, 3), dtype=np.float32)
    out = {"macs": macs}
    for engine in ("onnx", "torch"):
        ex = Extractor(weights, device="cpu", threads=threads, engine=engine, tile=0)
        ex.net(image)  # warm up
        out[engine] = min(_timed(lambda: ex.net(image)) for _ in range(3))
    # The photo command's way: the default tiles, one at a time on every thread, then side by side
    ex = Extractor(weights, device="cpu", threads=threads, engine="onnx")
    spans = [tile_spans(n, ex.tile, ex.overlap, ex.multiple) for n in (720, 1280)]
    out["tiles_macs"] = sum(count_macs(model, -(-(y1 - y0) // 16) * 16, -(-(x1 - x0) // 16) * 16)
                            for y0, y1 in spans[0] for x0, x1 in spans[1])
    out["tiles"] = len(spans[0]) * len(spans[1])
    out["lanes"] = lanes = ex.net.lanes
    for name, n in (("tiled_one", 1), ("tiled_lanes", lanes)):
        ex.net.lanes = n
        ex(image[0])  # warm up
        out[name] = min(_timed(lambda: ex(image[0])) for _ in range(3))
    a, b = torch.rand(PEAK_N, PEAK_N), torch.rand(PEAK_N, PEAK_N)
    a @ b
    out["peak"] = PEAK_N**3 / min(_timed(lambda: a @ b) for _ in range(3))
    return out


def _timed(run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def print_engines(photo: Path, args, mains: dict[str, Path]) -> None:
    print(f"engines: {photo.name} 1280x720 -> 7-frame MP4 (--frames 7, ping-pong, {LOOPS} loops), "
          f"{args.threads} threads")
    weights = ["--weights", args.weights] if args.weights else []
    common = ["--frames", "7", "--threads", str(args.threads), *weights]
    cases = {e: ([*common, "--engine", e], None) for e in ("onnx", "torch")}
    cases.update({f"main {rev}": (common, package) for rev, package in mains.items()})
    whole = cli_seconds(photo, cases)
    best = {name: min(t) for name, t in whole.items()}
    median = {name: statistics.median(t) for name, t in whole.items()}
    print(f"  whole process, `python -m blur2clip` ({ROUNDS} rounds, the cases in turn): best, median")
    for name in whole:
        print(f"    {name:14s} {best[name]:6.2f} s {best[name] / best['onnx']:5.2f}x onnx   "
              f"{median[name]:6.2f} s {median[name] / median['onnx']:5.2f}x onnx")
    for i, rev in enumerate(mains):
        floor = " (floor: 0.4x)" if i == 0 else ""
        print(f"    onnx / main {rev}: {best['onnx'] / best[f'main {rev}']:.2f}x best, "
              f"{median['onnx'] / median[f'main {rev}']:.2f}x median{floor}")

    print("  each step's share of the process (one fresh process per engine):")
    for engine in ("onnx", "torch"):
        cmd = [sys.executable, __file__, "--engine-case", str(photo), "--engine", engine, "--threads",
               str(args.threads), *weights]
        t = time.perf_counter()
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        process = time.perf_counter() - t
        steps = {"start-up": process - (r["decode"] + r["network"] + r["blend"] + r["encode"]),
                 "decode": r["decode"], "network": r["network"], "blending": r["blend"], "encode": r["encode"]}
        shares = " | ".join(f"{k} {v:.2f} s {100 * v / process:3.0f}%" for k, v in steps.items())
        print(f"    {engine:6s} process {process:5.2f} s: {shares} (torch loaded: {r['torch_loaded']})")

    times = {m: import_seconds(m) for m in HEAVY}
    print("  import alone, fresh interpreter (best of 3): " + ", ".join(f"{m} {s:.2f} s" for m, s in times.items()))

    cmd = [sys.executable, __file__, "--macs-case", "--threads", str(args.threads), *weights]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    print(f"  network, one whole 1280x720 pass, {r['macs'] / 1e9:.1f} GMAC (model.count_macs), best of 3:")
    for engine in ("onnx", "torch"):
        rate = r["macs"] / r[engine]
        print(f"    {engine:6s} {r[engine]:5.2f} s = {rate / 1e9:6.1f} GMAC/s = {r['peak'] / rate:4.1f}x below the "
              f"CPU's peak (floor: 3x)")
    print(f"    peak   {r['peak'] / 1e9:6.1f} GMAC/s ({PEAK_N}x{PEAK_N} fp32 matrix product in torch)")
    print(f"  network as the photo command runs it: onnxruntime, the default 512 px tiles ({r['tiles']} tiles, "
          f"{r['tiles_macs'] / 1e9:.1f} GMAC with the overlaps), best of 3, with the blending:")
    for name, what in (("tiled_one", f"one tile at a time on {args.threads} threads"),
                       ("tiled_lanes", f"{r['lanes']} side by side, one thread each")):
        print(f"    {what:40s} {r[name]:5.2f} s = {r['macs'] / r[name] / 1e9:5.1f} GMAC/s of the photo "
              f"({r['peak'] * r[name] / r['macs']:.1f}x below the peak), {r['tiles_macs'] / r[name] / 1e9:5.1f} "
              f"computed ({r['peak'] * r[name] / r['tiles_macs']:.1f}x below)")
    print(f"    side by side / one at a time: {r['tiled_lanes'] / r['tiled_one']:.2f}x\n")



# ---------------------------------------------------------------------------------------------- encoding


def encode_case(photo: Path, weights: str | None, threads: int) -> dict:
    """Runs in a child process: the clip's played frames from the network, then the encodings compared."""
    sys.path.insert(0, str(HERE))
    import imageio_ffmpeg
    from model_speed import load_network

    from blur2clip import CLIP_FRAMES, clipwriter, media
    from blur2clip.extract import Extractor
    from blur2clip.job import load_image
    from blur2clip.timeline import resample

    model, _ = load_network(weights)
    image, _ = load_image(photo)
    predicted = Extractor(model=model, device="cpu", threads=threads)(image, dtype=np.uint8)
    made = resample(predicted, CLIP_FRAMES)
    played = np.stack([np.asarray(made[i]) for i in media.play_order(CLIP_FRAMES, pingpong=True)])
    ffmpeg, tmp = imageio_ffmpeg.get_ffmpeg_exe(), photo.parent
    h, w = played.shape[1:3]

    def x264(out: Path, frames: np.ndarray, repeats: int, preset: str, crf: int, extra=()) -> float:
        """The base commit's command line: the raw frames fed `repeats` times to one x264; seconds."""
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-video_size", f"{w}x{h}", "-framerate", "24", "-i", "-", "-an",
               "-vf", "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,format=yuv420p",
               "-c:v", "libx264", "-preset", preset, "-crf", str(crf), *extra, "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", "-f", "mp4", str(out)]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        for _ in range(repeats):
            for f in frames:
                proc.stdin.write(f.tobytes())
        proc.stdin.close()
        if proc.wait():
            raise SystemExit("ffmpeg failed")
        return time.perf_counter() - t

    def psnr(path: Path) -> float:
        raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             capture_output=True, check=True).stdout
        got = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)[: len(played)].astype(np.float64)
        return float(10 * np.log10(255**2 / np.mean((got - played) ** 2)))

    def best(run, n: int = 3) -> float:
        return min(run() for _ in range(n))

    rows = {}
    base = tmp / "base.mp4"
    rows["base: every loop encoded"] = (best(lambda: x264(base, played, LOOPS, "medium", 18)), base)
    now = tmp / "now.mp4"

    def write_now() -> float:
        t = time.perf_counter()
        clipwriter.write_clip(played, now, "mp4", fps=24, loops=LOOPS, overwrite=True)
        return time.perf_counter() - t

    rows["now: fast, once + copies"] = (best(write_now), now)
    out = {"frames": f"{len(played)} frames of {w}x{h}, {LOOPS} loops", "rows": {}}
    for name, (seconds, path) in rows.items():
        out["rows"][name] = (seconds, path.stat().st_size / 2**20, psnr(path))
    sweep = {}
    for preset, crf in [("medium", 18), ("slow", 18), ("fast", 18), ("faster", 18), ("veryfast", 18),
                        ("medium", 20), ("faster", 17), ("veryfast", 16)]:
        path = tmp / f"{preset}{crf}.mp4"
        seconds = best(lambda: x264(path, played, 1, preset, crf))
        sweep[f"{preset} crf {crf}"] = (seconds, path.stat().st_size / 2**20, psnr(path))
    out["sweep"] = sweep
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base", default=BASE, help="the commit to compare with (default %(default)s)")
    ap.add_argument("--main", default=MAINS, help="the commits the whole process is compared with, the first "
                    "the one of the floor (default %(default)s)")
    ap.add_argument("--parts", default="engines,encode,720p,24mp", help="what to measure (default %(default)s)")
    ap.add_argument("--skip-24mp", action="store_true")
    ap.add_argument("--skip-base", action="store_true", help="measure this tree only")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    ap.add_argument("--encode", help=argparse.SUPPRESS)  # internal: the encoding comparison
    ap.add_argument("--engine-case", help=argparse.SUPPRESS)  # internal: one engine's clip, step by step
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--still", action="store_true", help=argparse.SUPPRESS)  # internal: the case with --still
    ap.add_argument("--macs-case", action="store_true", help=argparse.SUPPRESS)  # internal: MACs/s and peak
    args = ap.parse_args(argv)

    if args.case:
        print(json.dumps(run_case(Path(args.case), args.weights, args.threads, args.still)))
        return 0
    if args.encode:
        print(json.dumps(encode_case(Path(args.encode), args.weights, args.threads)))
        return 0
    if args.engine_case:
        print(json.dumps(engine_case(Path(args.engine_case), args.engine, args.weights, args.threads)))
        return 0
    if args.macs_case:
        print(json.dumps(macs_case(args.weights, args.threads)))
        return 0
    parts = set(args.parts.split(",")) - ({"24mp"} if args.skip_24mp else set())

    print(f"{cpu_name()}, {os.cpu_count()} CPUs, {args.threads} threads")
    print("All figures come from this one run on a machine that may be shared: compare them as ratios.\n")
    cases = [("720p", 1280, 720)] + ([("24mp", 6000, 4000)] if "24mp" in parts else [])
    with tempfile.TemporaryDirectory(prefix="blur2clip-bench-") as tmp:
        tmp = Path(tmp)
        skip = args.skip_base or not parts & {"720p", "24mp"}
        base = None if skip else export_base(args.base, Path(tempfile.mkdtemp(dir=tmp)))
        photos = {name: make_photo(tmp / f"{name}.jpg", w, h) for name, w, h in cases}
        if "engines" in parts:
            mains = {} if args.skip_base else {rev: export_base(rev, Path(tempfile.mkdtemp(dir=tmp)))
                                               for rev in args.main.split(",")}
            print_engines(photos["720p"], args, mains)
        if "encode" in parts:
            print_encode(photos["720p"], args)
        for name, _, _ in cases:
            if name in parts:
                print_case(name, photos[name], args, base)
    return 0


def print_encode(photo: Path, args) -> None:
    cmd = [sys.executable, __file__, "--encode", str(photo), "--threads", str(args.threads)]
    enc = json.loads(subprocess.run(cmd + (["--weights", args.weights] if args.weights else []),
                                    capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    print(f"encode: {enc['frames']} (best of 3)")
    (t0, mb0, _), = [v for k, v in enc["rows"].items() if k.startswith("base")]
    for name, (seconds, mb, db) in {**enc["rows"], **enc["sweep"]}.items():
        print(f"  {name:28s} {seconds:6.2f} s ({seconds / t0:.2f}x base)  {mb:6.2f} MB ({mb / mb0:.2f}x)  "
              f"PSNR {db:.2f} dB")


def print_case(name: str, photo: Path, args, base: Path | None) -> None:
    runs = {"now": run_child(photo, args, None)}
    if base is not None:
        runs["base"] = run_child(photo, args, base)
    if name == "24mp":  # the network at the photo's full size, for the still
        runs["now, --still"] = run_child(photo, args, None, still=True)
    print(f"\n{name}: -> {runs['now']['frames']}-frame MP4 x{LOOPS}, tile {runs['now']['tile']}/"
          f"{runs['now']['overlap']}")
    for who, r in runs.items():
        print(f"  {who:12s} {r['package']}, {r['source']}")
    for who, r in runs.items():
        print(f"  {who:12s} clip {r['mp4']} level {r['level']:.1f}, {r['mp4_mb']:.1f} MB | load "
              f"{r['load']:.2f} s | decode {r['decode']:.2f} s | model {r['model']:.2f} s | encode "
              f"{r['encode']:.2f} s | clip total {r['total']:.2f} s (process {r['process']:.1f} s) | "
              f"tree peak {r['tree_gb']:.2f} GB (Python alone {r['python_gb']:.2f}, ffmpeg alone "
              f"{r['ffmpeg_gb']:.2f})")
    if "base" in runs:
        n, b = runs["now"], runs["base"]
        print(f"  now/base: encode {n['encode'] / b['encode']:.2f}x, clip total {n['total'] / b['total']:.2f}x, "
              f"MP4 size {n['mp4_mb'] / b['mp4_mb']:.2f}x, tree peak {n['tree_gb'] / b['tree_gb']:.2f}x")
    if name == "24mp":
        for who in ("now", "now, --still"):
            g = runs[who]["tree_gb"]
            print(f"  24 MP tree peak, {who}: {g:.2f} GB = {g / FLOOR_24MP_GB:.2f}x the {FLOOR_24MP_GB:.0f} GB floor "
                  f"({'meets' if g <= FLOOR_24MP_GB else 'misses'} it); level {runs[who]['level']:.1f} "
                  f"({'meets' if runs[who]['level'] <= 5.1 else 'misses'} the 5.1 limit)")


if __name__ == "__main__":
    sys.exit(main())
