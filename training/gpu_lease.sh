#!/usr/bin/env bash
# One GPU lease, as one prepared command on the device machine (the repository's root there, its own
# python3 with torch; the photos packed by training/gpu_pack.py and carried as .gpu):
#     bash training/gpu_lease.sh SECONDS        e.g. 480, inside a run's timeout of 560
# 1. benchmarks/synth_speed.py: samples per second on one CPU thread, rendered on the GPU, and with 14
#    workers driving it; how far the GPU's samples are from the CPU's (at most 90 s).
# 2. training/gpu.py for the rest of SECONDS: the long run's stage 3 from training/long-run.safetensors,
#    the workers rendering on the GPU; if that fails within its first minute, again with them on the CPU.
# Everything that comes back lands in $OUT: synth_speed.out, gpu-run.out, and gpu.py's export
# (gpu-run.safetensors, gpu-run.json, log.jsonl, curves.png, config.json).
set -uo pipefail
secs=${1:?seconds for the whole lease}
out=${OUT:?the device machine sets OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
start=$(date +%s)
timeout 90 python3 benchmarks/synth_speed.py --data .gpu/photos --count 16 --workers 14 2>&1 | tee "$out/synth_speed.out"
burst() {  # $1: where the motion is rendered
    local left=$((secs - ($(date +%s) - start)))
    python3 training/gpu.py --seconds "$left" --init training/long-run.safetensors --data .gpu/photos \
        --out "/tmp/gpurun-$1" --export "$out" --synth-device "$1" 2>&1 | tee -a "$out/gpu-run.out"
}
t0=$(date +%s)
burst cuda
rc=$?
if [ $rc -ne 0 ] && [ $(($(date +%s) - t0)) -lt 60 ]; then
    echo "rendering on the GPU failed; the workers render on the CPU" | tee -a "$out/gpu-run.out"
    burst cpu
    rc=$?
fi
exit $rc
