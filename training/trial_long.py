"""Small-scale recipe trials on the long run's design, judged on real motion.

Each trial continues the long run's committed weights (training/long-run.safetensors) for 300 steps of
the long run's recipe (training/long.py) with one change, on the same seed and a cosine learning rate to
1% over those steps, so two trials differ only in the change named (a trial of SHAPES starts from those
weights put in a network of another shape). Run from the repository root:
    python training/trial_long.py NAME [--seed N] [--steps N] [--resume]   (NAME: one of TRIALS; seed 3
                                                                          and 300 steps unless told)
then  blur2clip eval --data ../shared/data/realmotion --weights runs/trial-NAME[-sN][-N]/stage3.safetensors --frames 7
(a copy or hard link of another run's validation.safetensors in runs/trial-NAME saves making it again).
"""

import sys

from blur2clip.device import emulated
from blur2clip.train import TrainConfig, train
from long import MODEL, SYNTH, W_MIDDLE

TRIALS = {
    "base": dict(),  # the long run's recipe: what 300 more steps on a closing schedule give
    # parallax (a smooth random depth scales the camera's travel per pixel) and non-rigid layers (a
    # smooth field moves a layer's parts up to a third of its travel apart): real motion is rarely rigid
    "deform": dict(synth={**SYNTH, "camera_depth": 0.3, "layer_warp": 0.3}),
    # travel made where the synthesis is still costs 0.03 per px (losses.py, w_still): a sharp photo and
    # the still background around a moving subject must not move (the still-content target)
    "still": dict(w_still=0.03),
    "still-light": dict(w_still=0.01),  # a third of it: do small objects still move?
    # longer motion: the camera's median travel 10 px (was 5), the layers' 36 (was 24); on realmotion the
    # long run's frames move 6-23 px apart where the true ones move 24-76
    "longer": dict(synth={**SYNTH, "camera_px": 10.0, "layer_px": 36.0}),
    # longer motion with the still term: does the term keep what "longer" cost the nearly still scene?
    "longer-still": dict(synth={**SYNTH, "camera_px": 10.0, "layer_px": 36.0}, w_still=0.03),
    # the long run's recipe (w_still 0.03) and the middle frame's error in the frequency domain, which weighs
    # the fine detail a blur takes away more than a per-pixel mean does (losses.py, w_fft)
    "fft": dict(w_still=0.03, w_fft=0.5),
    # the long run's recipe with a background out of focus in 15% of the samples (synth.p_defocus): blur that
    # is not motion, kept in the frames, so that the network does not take a soft background for motion
    # (the long run took it up at step 6904, so its SYNTH now holds it: today this trial is "still")
    "defocus": dict(synth={**SYNTH, "p_defocus": 0.15}, w_still=0.03),
    # the long run's recipe since step 6904 without the defocused samples: "defocus" against "still", the
    # other way round
    "no-defocus": dict(synth={**SYNTH, "p_defocus": 0.0}, w_still=0.03),
    # the middle frame weighted three times as much (27 against 9, a half of the loss's frame weight where
    # it had a quarter): realmotion's middle frame is the long run's weakest figure (24.21 dB at step
    # 7600 against the shipped weights' 24.35), and it is the photo a `--still` gives
    "middle-heavy": dict(w_still=0.03, w_middle=27.0),
    # the run's recipe on a deeper network: 6 blocks at the bottom (1/16 of the resolution, where a 3x3
    # reaches 48 px) instead of 2, the new ones starting as the identity (their scales are zero), so it
    # starts from the run's function; each block costs the same MACs at every level, so +4 blocks is
    # +20% of the network's time. Is the deblurring of long real blurs short of capacity?
    "deeper": dict(w_still=0.03),
    # the travel scored ten times as much (w_travel 1.0 against 0.1): on 37 held-out synthetic samples with
    # motion the run's travel was 0.16x the true one's length (median; slope 0.34), zero on a third of them
    "travel-strong": dict(w_still=0.03, w_travel=1.0),
    # the shipped weights' motion (SynthConfig's defaults: a camera that moves in 90% of the samples, layers
    # of median 14 px) with the run's still samples, defocus and still term: the run's middle frame on
    # realmotion sits 0.1-0.16 dB under the shipped one's, and trial "objects" cost the middle 0.12 dB
    "camera-mix": dict(synth={**SYNTH, "p_static_camera": 0.1, "layer_probs": (0.15, 0.35, 0.3, 0.2),
                              "layer_px": 14.0, "layer_tail": 0.6, "camera_tail": 0.9}, w_still=0.03),
    # a quarter of the moving cameras travel 30-90 px (log-uniform; synth.p_long_camera): the run's camera
    # moves 5 px at the median and over 40 px in about 1% of the samples, where realmotion's scenes and the
    # GoPro pairs move 24-76 px and its frames come out as the photo. Unlike "longer", the short blurs stay
    "long-camera": dict(synth={**SYNTH, "p_long_camera": 0.25}, w_still=0.03),
    "long-camera-light": dict(synth={**SYNTH, "p_long_camera": 0.1}, w_still=0.03),  # 6% of the samples
    # a frame's error as its root mean square (losses.rmse) instead of Charbonnier per pixel: PSNR scores the
    # square error, whose best guess where a frame cannot be told (a long blur, the drops of a spray) is the
    # mean of what it could be; an L1-like loss takes their median, a sharp guess that may be wrong
    "rmse": dict(w_still=0.03, rec="rmse"),
    # crops of 256 px (the run's are 192): room for a longer blur and more of what surrounds it in each sample,
    # at 1.8x the time per step (small crops early and large ones late was a suggestion)
    "crop256": dict(w_still=0.03, crop=256),
    # bolder, towards the shipped weights' recipe: their motion (camera-mix), a third of the defocused samples
    # and of the still term. On two of realmotion's scenes of moving people (0004 basketball, 0008) the run's
    # middle frame gains 0.05 and 0.53 dB over the photo where the shipped weights' gains 0.74 and 1.09, and
    # its travel on 0004 is 0.5 px (the true frames 24.5): has the run learned to leave too much alone?
    "bold": dict(synth={**SYNTH, "p_static_camera": 0.1, "layer_probs": (0.15, 0.35, 0.3, 0.2), "layer_px": 14.0,
                        "layer_tail": 0.6, "camera_tail": 0.9, "p_defocus": 0.05}, w_still=0.01),
    # the travel's error averaged over the pixels that moved, not over every pixel (losses.py, travel_over):
    # one object is 8-16% of a sample, so its travel weighs a tenth of a camera's; on a still camera the run's
    # travel reaches 0.42x of an object's at 16 px and 0.09x at 64 px (training/still.py, 2026-12-01)
    "moving": dict(w_still=0.03, travel_over="moving"),
    # the reblur term 4x: the frames must average back to the photo (with the travel as made, their average
    # is further from the photo than the middle frame alone: test_time.py scale)
    "reblur-strong": dict(w_still=0.03, w_reblur=4.0),
    # a fifth of the samples with a swarm of small things moving each its own way (synth.p_swarm): the run's
    # objects are 25-75% of a sample, so it has never seen drops, birds or leaves, whose directions one by one
    # the photo cannot tell; on realmotion's spray (scene 0000) its travel reaches 32 px where drops fly apart
    "swarm": dict(w_still=0.03, synth={**SYNTH, "p_swarm": 0.2}),
    # the swarm with long-camera's long motion: does it keep the travel from overshooting on the spray?
    "long-swarm": dict(w_still=0.03, synth={**SYNTH, "p_swarm": 0.2, "p_long_camera": 0.25}),
    # do no harm (losses.py, w_harm): each frame's error beyond the blur's own, pixel by pixel, counted once
    # more. Where the blur is the better answer (a still part, the drops of a spray: realmotion's scene 0000
    # stays under its photo, and a 4 px object on a still camera loses to it) the network pays twice
    "harm": dict(w_still=0.03, w_harm=1.0),
    # long motion again, now that harm is paid twice: long-camera's and longer's travel overshot on the spray
    # of scene 0000 (-1.19 and -1.86 under its photo) where the middle frame gained; does the harm term keep
    # the gain and stop the overshoot?
    "long-camera-harm": dict(synth={**SYNTH, "p_long_camera": 0.25}, w_still=0.03, w_harm=1.0),
    "longer-harm": dict(synth={**SYNTH, "camera_px": 10.0, "layer_px": 36.0}, w_still=0.03, w_harm=1.0),
}
SHAPES = {"deeper": dict(middle_blocks=6)}  # trials on another network shape: the run's weights put in it
INIT = "training/long-run.safetensors"

name = sys.argv[1]
seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 3
steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 300
out = f"runs/trial-{name}" + (f"-s{seed}" if seed != 3 else "") + (f"-{steps}" if steps != 300 else "")
init = INIT
if name in SHAPES:
    from dataclasses import replace
    from pathlib import Path

    from blur2clip.model import Blur2Clip
    from blur2clip.weights import load_model, save

    init = f"{out}/init.safetensors"
    if not Path(init).is_file():
        source = load_model(INIT)
        shaped = Blur2Clip(replace(source.config, **SHAPES[name]))
        missing, unexpected = shaped.load_state_dict(source.state_dict(), strict=False)
        assert not unexpected, unexpected  # every weight of the run is used; the new blocks keep their start
        save(shaped, init)
train(TrainConfig(data="../shared/data/photos", out=out, stage="3", steps=[steps] * 3,
                  init=init, model=MODEL, batch=8,
                  lr=5e-4, warmup=50, seed=seed, workers=1, threads=1,
                  # EMA of 0.99: after 300 steps 5% of the starting weights are left in the average (0.999
                  # would keep 74% and hide the difference a trial makes)
                  ema=0.99, val_every=300, ckpt_every=100, compile=True,
                  precision="fp32" if emulated("cpu", "bf16") else "bf16",  # as long.py: no emulated bf16
                  resume="--resume" in sys.argv,
                  **{"crop": 192, "synth": SYNTH, "w_middle": W_MIDDLE, "w_reblur": 1.0, **TRIALS[name]}))
