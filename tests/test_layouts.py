"""Data layouts: detection, checks and summaries, samples from real consecutive frames, and evaluation."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from blur2clip import footage, metrics
from blur2clip.cli import ExitCode, main
from blur2clip.data import detect_layout, open_data
from blur2clip.errors import MediaError
from blur2clip.evaluation import evaluate
from blur2clip.layouts import window_centres
from blur2clip.samples import split_weights
from blur2clip.synth import to_linear
from layouts import consecutive_frames, make_clips, make_gopro, make_pairs, make_photos, make_sequences, make_videos


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")  # folders not named after their layout: the summary must say it
    return {"sequences": make_sequences(root / "a"), "gopro": make_gopro(root / "b"),
            "videos": make_videos(root / "c"), "photos": make_photos(root / "d"), "clips": make_clips(root / "e"),
            "pairs": make_pairs(root / "f")}


SUMMARIES = {  # each summary after "ROOT: "
    "photos": ["photos (synthetic motion): 25 for training, 5 held out for validation"],
    "sequences": ["sequences (folders of consecutive sharp frames (GoPro_Large_all))",
                  "  2 sequences for training (20 samples), 1 for validation; 48x48; 7 frames per blur into 7 frames"],
    "gopro": ["gopro (blur/ or blur_gamma/ beside sharp/ per sequence (GoPro_Large); middle frame only)",
              "  1 sequence for training (3 samples), 1 for validation; 48x48; 1 blurred photo per sample, middle "
              "frame known only (trains stage 1)"],
    "videos": ["videos (high-frame-rate videos, decoded with ffmpeg)",
               "  1 sequence for training (18 samples), 1 for validation; 48x48; 7 frames per blur into 7 frames"],
    "pairs": ["pairs (NAME_blur*.png beside NAME_sharp*.png, the sharp middle frame of each blur; middle frame only)",
              "  3 pairs: 2 for training, 1 held out for validation; 48x48; middle frame known only (trains stage 1)"],
}


@pytest.mark.parametrize("layout", ["sequences", "gopro", "videos", "photos", "pairs"])
def test_each_layout_is_detected_and_summed_up(folders, layout):
    assert detect_layout(folders[layout]) == layout
    data = open_data(folders[layout])
    assert data.layout == layout and data.train and data.val and not data.skipped
    assert data.middle_only == (layout in ("gopro", "pairs"))
    first, *rest = data.summary()
    assert first.startswith(f"{folders[layout]}: ")
    assert [first.removeprefix(f"{folders[layout]}: "), *rest] == SUMMARIES[layout]


def test_a_folder_of_unrelated_photos_in_subfolders_is_photos_not_sequences(tmp_path):
    make_photos(tmp_path / "set_a", 12)
    make_photos(tmp_path / "set_b", 12)
    assert detect_layout(tmp_path) == "photos"


def test_the_test_folder_holds_out_sequences_for_validation(folders):
    data = open_data(folders["sequences"])
    assert [s.name for s in data.val] == ["test/seq_c"]
    assert sorted(s.name for s in data.train) == ["train/seq_a", "train/seq_b"]


def test_one_rule_holds_out_a_test_folder_then_one_name_in_ten_then_the_last():
    from blur2clip.layouts import hold_out, is_held_out

    assert [is_held_out(Path(f"photo{i:03d}.png")) for i in (5, 6, 7)] == [False, True, True]
    names = ["train/photo005.png", "train/photo006.png", "test/photo001.png"]
    assert hold_out(names, Path) == (names[:2], names[2:])
    assert hold_out(names, Path, test_folder=False) == ([names[0], names[2]], [names[1]])
    both = ["photo006.png", "photo007.png"]  # every name held out by its hash: the last one instead
    assert hold_out(both, Path) == (both[:1], both[1:])
    assert hold_out(["photo005.png", "photo008.png"], Path) == (["photo005.png"], ["photo008.png"])
    assert hold_out(["photo005.png"], Path) == ([], ["photo005.png"])  # a lone one is held out whole


def test_pairs_follow_the_same_rule_as_footage(folders, tmp_path):
    root = shutil.copytree(folders["pairs"], tmp_path / "pairs")
    assert [s.name for s in open_data(root).val] == ["Istanbul_blur1"]  # by its name's hash
    (root / "test").mkdir()
    for name in ("Street_blur1.png", "Street_sharp1.png"):
        (root / name).rename(root / "test" / name)
    data = open_data(root)
    assert [s.name for s in data.val] == ["test/Street_blur1"]
    assert [s.name for s in data.train] == ["Flower_blur1", "Istanbul_blur1"]


def test_one_video_is_split_in_time_for_validation(folders, tmp_path):
    shutil.copy(folders["videos"] / "clip_a.mp4", tmp_path / "only.mp4")
    data = open_data(tmp_path)
    (train,), (val,) = data.train, data.val
    assert train.first == 0 and train.end == val.first and val.end == 24
    assert len(data.found) == 1  # evaluation still sees the whole video once


def test_broken_and_short_sequences_are_skipped_with_their_reason(folders, tmp_path):
    root = tmp_path / "seqs"
    shutil.copytree(folders["sequences"], root)
    (root / "train" / "seq_b" / "000003.png").write_bytes(b"not a png")
    for p in sorted((root / "train" / "seq_a").iterdir())[5:]:
        p.unlink()  # 5 frames left, fewer than 7 per blur
    data = open_data(root, layout="sequences")
    assert [s.name for s in data.found] == ["test/seq_c"]
    assert any("seq_a" in s and "fewer than 7" in s for s in data.skipped)
    assert any("seq_b" in s and "000003.png unreadable" in s for s in data.skipped)
    assert "skipped 2" in "\n".join(data.summary())
    with pytest.raises(ValueError, match="no usable sequence for the sequences layout"):
        open_data(root / "train", layout="sequences")


def test_a_broken_video_is_skipped(folders, tmp_path):
    shutil.copy(folders["videos"] / "clip_a.mp4", tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    data = open_data(tmp_path)
    assert [s.name for s in data.found] == ["good.mp4"]
    assert data.skipped and data.skipped[0].startswith("bad.mp4: not a readable video")


def test_more_sub_frames_than_frames_split_time_in_proportion():
    w = split_weights(7, 7)
    assert torch.equal(w, torch.eye(7))
    for n in (14, 11, 9):
        w = split_weights(n, 7)
        torch.testing.assert_close(w.sum(1), torch.ones(7))  # each frame is an average
        torch.testing.assert_close(w.sum(0), torch.full((n,), 7 / n))  # each sub-frame counted once overall
    assert split_weights(14, 7)[0, :2].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("n", [7, 11])
def test_sequence_samples_average_back_to_their_blur_in_linear_light(folders, n):
    data = open_data(folders["sequences"], frames_per_blur=n)
    ds = data.train_set(32, seed=3)
    blurred, frames, clean, _ = ds[5]
    assert blurred.shape == clean.shape == (3, 32, 32) and frames.shape == (7, 3, 32, 32)
    torch.testing.assert_close(to_linear(frames).mean(0), to_linear(clean), atol=1e-5, rtol=0)
    again = ds[5]
    assert all(torch.equal(a, b) for a, b in zip(again, (blurred, frames, clean)))  # seeded by the index
    assert not torch.equal(ds[6][1], frames)


def test_evaluation_samples_are_the_real_blur_without_added_noise(folders):
    data = open_data(folders["sequences"])
    name, blurred, frames, clean = next(data.items(per_sequence=1))
    assert name == "test/seq_c" and blurred.shape == (3, 48, 48)
    assert torch.equal(blurred, clean)
    raw = consecutive_frames(16, seed=2)[:7]  # seq_c's first window, as written
    expected = to_linear(torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255).mean(0)
    torch.testing.assert_close(to_linear(clean), expected, atol=1e-5, rtol=0)


def test_video_frames_read_by_seeking_are_the_frames_decoded_in_order(folders):
    import imageio_ffmpeg

    path = folders["videos"] / "clip_b.mp4"
    gen = imageio_ffmpeg.read_frames(str(path))
    next(gen)
    decoded = np.stack([np.frombuffer(b, np.uint8).reshape(48, 48, 3) for b in gen])
    assert len(decoded) == 24
    seqs, _ = footage.scan_videos(folders["videos"], 7)
    seq = next(s for s in seqs if s.name == "clip_b.mp4")
    for first in (0, 1, 9, 17):
        got = footage.read_frames(seq, first, 7, (4, 8, 32, 24))
        assert np.array_equal(got, decoded[first:first + 7, 8:32, 4:36])
    with pytest.raises(OSError, match="past the end"):
        footage.read_frames(seq, 20, 7, (0, 0, 48, 48))


def test_gopro_samples_carry_the_middle_frame_only(folders):
    data = open_data(folders["gopro"])
    assert data.middle_only
    blurred, frames, clean, travel = data.train_set(32, seed=0)[0]
    assert travel.isnan().all()  # real frames: the travel is not known
    assert frames.shape == (1, 3, 32, 32) and torch.equal(blurred, clean)
    name, blurred, frames, _ = next(data.items(1))
    sharp = np.asarray(Image.open(folders["gopro"] / name / "sharp" / "000000.png"))
    gamma = np.asarray(Image.open(folders["gopro"] / name / "blur_gamma" / "000000.png"))
    assert np.array_equal((frames[0].permute(1, 2, 0).numpy() * 255).round(), sharp)
    assert np.array_equal((blurred.permute(1, 2, 0).numpy() * 255).round(), gamma)  # blur_gamma preferred


def _oracle(data, size=None):
    """A predictor that knows the ground truth of every evaluation sample."""
    truth = {blurred.numpy().tobytes(): frames for _, blurred, frames, _ in data.items(2, size)}

    def predict(blurred):
        assert blurred.numpy().tobytes() in truth, "not an evaluation sample"
        return truth[blurred.numpy().tobytes()]
    return predict


@pytest.mark.parametrize("layout", ["sequences", "videos", "photos"])
def test_ground_truth_scores_the_maximum_and_copies_score_the_baseline(folders, layout):
    data = open_data(folders[layout])
    size = 48 if layout == "photos" else None
    best = evaluate(data, _oracle(data, size), per_sequence=2, size=size)
    assert best.mean.model["ppsnr"] == best.mean.model["middle"] == best.mean.model["outer"] == 100.0
    # the truth re-averaged: against a real blur only 8-bit rounding differs; photos' inputs have noise
    assert best.mean.model["reblur"] > (25 if layout == "photos" else 40)
    assert len(best.sequences) == len(data.val if layout == "photos" else data.found)
    assert best.mean.model["ssim"] == best.mean.model["middle_ssim"] == pytest.approx(1.0, abs=1e-6)
    copies = evaluate(data, lambda b: b[None].expand(7, -1, -1, -1), per_sequence=2, size=size)
    for k in ("ppsnr", "middle", "outer"):
        assert copies.mean.model[k] == pytest.approx(copies.mean.baseline[k], abs=1e-6)
        assert copies.mean.baseline[k] == pytest.approx(best.mean.baseline[k], abs=1e-6)
        assert copies.mean.baseline[k] < 60
    assert copies.mean.model["reblur"] == 100.0
    for k in ("ssim", "middle_ssim"):
        assert copies.mean.model[k] == pytest.approx(copies.mean.baseline[k], abs=1e-6) and copies.mean.model[k] < 1
    assert "reblur" not in copies.mean.baseline  # copies average back to the input: no baseline to beat


@pytest.mark.parametrize("layout", ["gopro", "pairs"])
def test_middle_frame_layouts_score_the_middle_frame_and_the_reblur(folders, layout):
    data = open_data(folders[layout])
    best = evaluate(data, lambda b: _oracle(data)(b).expand(7, -1, -1, -1), per_sequence=2)
    assert set(best.mean.model) == {"middle", "middle_ssim", "reblur"} and best.mean.model["middle"] == 100.0
    assert best.mean.model["middle_ssim"] == pytest.approx(1.0, abs=1e-6)
    copies = evaluate(data, lambda b: b[None].expand(7, -1, -1, -1), per_sequence=2)
    assert copies.mean.model["middle"] == pytest.approx(copies.mean.baseline["middle"])
    expected = np.mean([metrics.psnr(b, f[0], dims=(0, 1, 2)).item() for _, b, f, _ in data.items(2)])
    assert copies.mean.baseline["middle"] == pytest.approx(expected, abs=1e-4)
    assert set(copies.mean.baseline) == {"middle", "middle_ssim"}


def test_eval_command_prints_a_table_or_json(folders, tiny_weights, capsys):
    code = main(["eval", "--data", str(folders["sequences"]), "--weights", str(tiny_weights), "--samples", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert "pPSNR dB" in lines[1] and "reblur dB" in lines[1]
    assert [line.split()[0] for line in lines[2:5]] == ["test/seq_c", "train/seq_a", "train/seq_b"]
    assert set(lines[5]) == {"-"} and lines[6].split()[:2] == ["mean", "6"]
    assert "SSIM" in lines[1] and "middle SSIM" in lines[1]
    assert all(" (-)  " in line for line in [*lines[2:5], lines[6]])  # the reblur has no baseline
    assert lines[1].endswith("moves px (true)")  # how far the frames move, beside the true frames
    assert all(re.search(r"\d+\.\d \(\d+\.\d\)$", line) for line in [*lines[2:5], lines[6]])
    assert "2 sequences for training" in err  # the summary goes to stderr
    code = main(["eval", "--data", str(folders["gopro"]), "--weights", str(tiny_weights), "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["layout"] == "gopro" and set(result["mean"]["model"]) == {"middle", "middle_ssim", "reblur"}
    assert result["mean"]["samples"] == 6 and len(result["sequences"]) == 2
    assert "reblur" not in result["mean"]["baseline"]


def test_eval_of_a_folder_with_nothing_usable_says_so_in_one_line(tmp_path, tiny_weights, capsys):
    (tmp_path / "notes.txt").write_text("nothing here")
    code = main(["eval", "--data", str(tmp_path), "--weights", str(tiny_weights)])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert str(tmp_path) in err and "no photos, frame sequences or videos" in err


TINY = ["--width", "4", "--enc-blocks", "1,1", "--dec-blocks", "1,1", "--middle-blocks", "1", "--crop", "32",
        "--batch", "2", "--workers", "0", "--val-count", "2", "--val-size", "32", "--steps", "1"]


@pytest.mark.parametrize("args, message, code", [
    (["--stage", "3"], "knows only the middle frame, so it trains stage 1, not stage 3", ExitCode.USAGE),
    (["--layout", "sequences"], "no usable sequence for the sequences layout", ExitCode.INPUT),
    (["--crop", "64", "--stage", "1"], "frames of 48x48 are smaller than the 64 px training crop", ExitCode.INPUT),
])
def test_train_command_says_in_one_line_what_the_data_cannot_do(folders, tmp_path, capsys, args, message, code):
    assert main(["train", "--data", str(folders["gopro"]), "--out", str(tmp_path / "run"), *TINY, *args]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_command_on_a_missing_device_exits_with_the_device_code(folders, tmp_path, capsys):
    code = main(["train", "--data", str(folders["gopro"]), "--out", str(tmp_path / "run"), *TINY,
                 "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 6 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1


def test_train_command_on_videos_prints_the_summary_and_the_stage_file(folders, tmp_path, capsys):
    code = main(["train", "--data", str(folders["videos"]), "--out", str(tmp_path / "run"), "--stage", "1",
                 "--frames-per-blur", "14", *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == str(tmp_path / "run" / "stage1.safetensors")
    assert "videos (high-frame-rate videos" in err and "14 frames per blur into 7 frames" in err
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "stage1.safetensors.sha256").is_file()


# ---------------------------------------------------------------- clips: a blurred photo beside all its true frames

def test_window_centres_split_any_frame_count_evenly():
    assert window_centres(48, 7) == [3, 10, 17, 24, 30, 37, 44]  # as realmotion's README gives them
    assert window_centres(48, 48) == list(range(48))
    assert window_centres(12, 3) == [2, 6, 10]
    assert window_centres(7, 7) == list(range(7))


def test_a_clips_folder_is_detected_with_any_frame_count(folders):
    assert detect_layout(folders["clips"]) == "clips"
    data = open_data(folders["clips"])
    assert data.layout == "clips" and not data.skipped and data.count_items() == 3
    assert [s.count for s in data.found] == [48, 12, 10]  # counted by decoding, not from the header
    text = "\n".join(data.summary())
    assert "3 blurred photos with 10 to 48 true frames" in text and "centres of 7 windows" in text
    assert not data.train and not data.middle_only
    for make in (lambda: data.train_set(32, seed=0), lambda: data.make_validation(2, 32)):
        with pytest.raises(ValueError, match="clips layout is for evaluation only"):
            make()


@pytest.mark.parametrize("frames", [7, 3])
def test_clip_samples_are_the_true_frames_at_the_window_centres(folders, frames):
    root = folders["clips"]
    data = open_data(root, frames=frames)
    for name, blurred, gt, _ in data.items():
        assert gt.shape == (frames, 3, 48, 48)
        expected = np.asarray(Image.open(root / "blurry" / f"{name}.png"), dtype=np.float32) / 255
        assert np.array_equal(blurred.permute(1, 2, 0).numpy(), expected)
        seq = next(s for s in data.found if s.name == name)
        if seq.video is None:  # a folder of frames: exactly the files at the centres
            for k, i in enumerate(window_centres(seq.count, frames)):
                truth = np.asarray(Image.open(seq.frames[i]), dtype=np.float32) / 255
                assert np.array_equal(gt[k].permute(1, 2, 0).numpy(), truth)
        else:  # H.264 at high quality: the decoded frame, not its neighbours
            all_frames = footage.decode_video(seq.video, (0, 0, 48, 48)).astype(np.float32) / 255
            for k, i in enumerate(window_centres(seq.count, frames)):
                err = [np.abs(gt[k].permute(1, 2, 0).numpy() - f).mean() for f in all_frames]
                assert int(np.argmin(err)) == i and err[i] == 0


def test_clips_score_the_maximum_for_the_truth_and_the_baseline_for_copies(folders):
    data = open_data(folders["clips"])
    best = evaluate(data, _oracle(data))
    assert best.mean.model["ppsnr"] == best.mean.model["middle"] == best.mean.model["outer"] == 100.0
    assert best.mean.samples == 3 and [s.name for s in best.sequences] == ["0000", "0001", "0002"]
    copies = evaluate(data, lambda b: b[None].expand(7, -1, -1, -1))
    for k in ("ppsnr", "middle", "outer"):
        assert copies.mean.model[k] == pytest.approx(copies.mean.baseline[k], abs=1e-6)
        assert copies.mean.baseline[k] < 60
    assert copies.mean.model["reblur"] == 100.0


def test_a_clip_whose_frames_do_not_match_its_photo_is_skipped_with_the_reason(folders, tmp_path):
    root = shutil.copytree(folders["clips"], tmp_path / "clips")
    Image.open(root / "blurry" / "0001.png").resize((40, 48)).save(root / "blurry" / "0001.png")
    (root / "blurry" / "0003.png").write_bytes((root / "blurry" / "0002.png").read_bytes())  # no frames
    data = open_data(root)
    assert [s.name for s in data.found] == ["0000", "0002"]
    assert data.skipped == ["0001: the photo is 40x48 but its true frames are frames of 48x48",
                            "0003: no frames/0003.mp4 (or other video) and no frames/0003/ folder"]


def test_eval_of_clips_whose_sizes_all_mismatch_fails_in_one_line(folders, tmp_path, tiny_weights, capsys):
    root = shutil.copytree(folders["clips"], tmp_path / "clips")
    for p in (root / "blurry").iterdir():
        Image.open(p).resize((32, 32)).save(p)
    code = main(["eval", "--data", str(root), "--weights", str(tiny_weights)])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert "no usable clip" in err and "the photo is 32x32 but its true frames are frames of 48x48" in err


def test_eval_command_on_clips_and_train_refuses_them(folders, tmp_path, tiny_weights, capsys):
    code = main(["eval", "--data", str(folders["clips"]), "--weights", str(tiny_weights), "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["layout"] == "clips" and result["mean"]["samples"] == 3
    assert set(result["mean"]["model"]) == {"ppsnr", "ssim", "middle", "middle_ssim", "outer", "reblur", "moves",
                                            "moves_true"}
    code = main(["train", "--data", str(folders["clips"]), "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert code == 3 and "evaluation only" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- pairs, photos held out, saved frames, progress

def test_a_flat_folder_of_blurred_and_sharp_pairs_is_pairs_not_sequences(folders, tmp_path):
    assert detect_layout(folders["pairs"]) == "pairs"
    data = open_data(folders["pairs"])
    assert [s.name for s in data.found] == ["Flower_blur1", "Istanbul_blur1", "Street_blur1"]
    name, blurred, frames, _ = next(data.items())
    root = folders["pairs"]
    assert np.array_equal((blurred.permute(1, 2, 0).numpy() * 255).round(),
                          np.asarray(Image.open(root / "Flower_blur1.png")))
    assert frames.shape == (1, 3, 48, 48)
    assert np.array_equal((frames[0].permute(1, 2, 0).numpy() * 255).round(),
                          np.asarray(Image.open(root / "Flower_sharp1.png")))
    # a pair whose photos differ in size is skipped with the reason; a blur without its sharp photo is no pair
    bad = shutil.copytree(root, tmp_path / "pairs")
    Image.open(bad / "Street_sharp1.png").resize((40, 48)).save(bad / "Street_sharp1.png")
    (bad / "Istanbul_sharp1.png").unlink()
    data = open_data(bad, layout="pairs")
    assert [s.name for s in data.found] == ["Flower_blur1"]
    assert data.skipped == ["Street_blur1: Street_sharp1.png is not of the same size"]


def test_a_single_pair_is_evaluated_and_trains_nothing(folders, tmp_path, tiny_weights, capsys):
    for name in ("Flower_blur1.png", "Flower_sharp1.png"):
        shutil.copy(folders["pairs"] / name, tmp_path / name)
    data = open_data(tmp_path)
    assert data.layout == "pairs" and not data.train and [s.name for s in data.val] == ["Flower_blur1"]
    code = main(["eval", "--data", str(tmp_path), "--weights", str(tiny_weights), "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["mean"]["samples"] == 1
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert code == 3 and "nothing left to train on" in err and len(err.strip().splitlines()) == 1, err


def test_eval_of_photos_scores_the_held_out_ones_unless_asked_for_all(folders, tiny_weights, capsys):
    data = open_data(folders["photos"])
    assert 0 < len(data.val) < len(data.found)
    code = main(["eval", "--data", str(folders["photos"]), "--weights", str(tiny_weights), "--samples", "1",
                 "--size", "32", "--json", "-q"])
    held = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["name"] for s in held["sequences"]] == [p.name for p in data.val]
    code = main(["eval", "--data", str(folders["photos"]), "--weights", str(tiny_weights), "--samples", "1",
                 "--size", "32", "--json", "-q", "--all-photos"])
    every = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["name"] for s in every["sequences"]] == [p.name for p in data.found]
    # a photo's samples are the same whatever else is scored
    for row in held["sequences"]:
        assert row == next(r for r in every["sequences"] if r["name"] == row["name"])


def test_three_photos_are_enough_for_eval(tmp_path, tiny_weights, capsys):
    make_photos(tmp_path / "three", 3)
    data = open_data(tmp_path / "three")
    assert data.layout == "photos" and len(data.val) == 1 and len(data.train) == 2
    code = main(["eval", "--data", str(tmp_path / "three"), "--weights", str(tiny_weights), "--samples", "1",
                 "--size", "32", "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [s["name"] for s in json.loads(out)["sequences"]] == [data.val[0].name]


@pytest.mark.parametrize("layout", ["sequences", "gopro"])
def test_save_frames_writes_the_input_and_the_frames_as_they_were_scored(folders, tmp_path, layout):
    data = open_data(folders[layout])
    truth = {}
    for name, blurred, frames, _ in data.items(1):
        truth[name] = (blurred, frames)

    def backwards(b):  # the truth played backwards where every frame is known: scored forwards
        frames = truth[next(n for n, (x, _) in truth.items() if torch.equal(x, b))][1]
        return frames.flip(0) if len(frames) > 1 else frames.expand(7, -1, -1, -1)

    evaluate(data, backwards, per_sequence=1, save=tmp_path / "saved")

    def png(path):
        return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1)

    for name, (blurred, frames) in truth.items():
        folder = tmp_path / "saved" / name / "000"
        assert torch.allclose(png(folder / "input.png"), blurred, atol=1 / 255)
        assert len(list((folder / "predicted").iterdir())) == 7
        if len(frames) > 1:
            for i in range(7):
                assert torch.allclose(png(folder / "predicted" / f"{i:02d}.png"), frames[i], atol=1 / 255)
                assert torch.allclose(png(folder / "true" / f"{i:02d}.png"), frames[i], atol=1 / 255)
        else:  # only the middle frame is known: it is numbered as the middle frame
            assert [p.name for p in (folder / "true").iterdir()] == ["03.png"]
            assert torch.allclose(png(folder / "true" / "03.png"), frames[0], atol=1 / 255)


def test_eval_command_saves_frames_into_a_new_folder_only_and_shows_progress(folders, tmp_path, tiny_weights,
                                                                             capsys, monkeypatch):
    import blur2clip.cli as cli

    monkeypatch.setattr(cli, "EVAL_PROGRESS_EVERY", 0.0)  # a line per sample (stderr is no terminal here)
    code = main(["eval", "--data", str(folders["pairs"]), "--weights", str(tiny_weights),
                 "--save-frames", str(tmp_path / "saved")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["Flower_blur1", "Istanbul_blur1",
                                                                        "Street_blur1"]
    assert "Scoring 1/3: Flower_blur1" in err and "Scoring 2/3: Istanbul_blur1" in err
    assert "middle SSIM" in out and out.splitlines()[-1].endswith(" (-)")
    code = main(["eval", "--data", str(folders["pairs"]), "--weights", str(tiny_weights),
                 "--save-frames", str(tmp_path / "saved")])
    err = capsys.readouterr().err
    assert code == 4 and len(err.strip().splitlines()) == 1 and "not an empty folder" in err, err
    (tmp_path / "a-file").touch()  # a folder that cannot be made fails before anything is scored
    code = main(["eval", "--data", str(folders["pairs"]), "--weights", str(tiny_weights),
                 "--save-frames", str(tmp_path / "a-file" / "saved")])
    err = capsys.readouterr().err
    assert code == 4 and err == f"blur2clip: error: {tmp_path / 'a-file' / 'saved'}: {tmp_path / 'a-file'} is not a folder\n"
    assert not (tmp_path / "a-file").is_dir()


def test_eval_of_shipped_travel_weights_scores_footage_at_its_frames_per_blur(folders, capsys):
    # the shipped network makes 21 frames, 7 frames per blur make 7: scored at 7 without being told
    assert main(["eval", "--data", str(folders["sequences"]), "--samples", "1", "--json", "--threads", "1"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["layout"] == "sequences" and scored["mean"]["samples"] >= 1
    from blur2clip.evaluation import predictor
    from blur2clip.extract import Extractor

    with pytest.raises(ValueError, match=r"the predictions have 21 frames and the data 7: score as many "
                                         r"\(predictor\(extractor, frames=7\)"):
        evaluate(open_data(folders["sequences"]), predictor(Extractor(threads=1)), per_sequence=1)


def test_eval_writes_what_it_scored_only_into_a_new_folder_outside_the_data(folders, tmp_path, tiny_weights, capsys):
    inside = folders["pairs"] / "saved"
    assert main(["eval", "--data", str(folders["pairs"]), "--weights", str(tiny_weights), "--save-frames",
                 str(inside)]) == ExitCode.OUTPUT
    assert f"{inside}: is inside the data folder" in capsys.readouterr().err and not inside.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "input.png").write_bytes(b"a user's file")
    with pytest.raises(MediaError, match="exists and is not an empty folder"):  # from Python too
        evaluate(open_data(folders["pairs"]), lambda b: b[None].expand(7, -1, -1, -1), save=mine)
    assert (mine / "input.png").read_bytes() == b"a user's file"


def test_eval_of_photos_lists_a_photo_it_cannot_read_and_scores_the_others(tmp_path, tiny_weights, capsys):
    root = make_photos(tmp_path / "photos")
    data = open_data(root)
    broken = data.val[0]
    broken.write_bytes(b"not a png any more")
    assert main(["eval", "--data", str(root), "--weights", str(tiny_weights), "--size", "48", "--samples", "1",
                 "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["mean"]["samples"] == len(data.val) - 1
    assert [line.split(":")[0] for line in scored["skipped"]] == [broken.name]


def test_eval_refuses_a_synthetic_size_that_would_not_fit_in_memory(folders, tiny_weights, capsys):
    from blur2clip.layouts import MAX_EVAL_SYNTH

    for size in (MAX_EVAL_SYNTH + 1, 4096):
        assert main(["eval", "--data", str(folders["photos"]), "--weights", str(tiny_weights), "--size", str(size),
                     "--samples", "1", "--json"]) == ExitCode.USAGE
        out, err = capsys.readouterr()
        assert out == "" and err.endswith(f"synthetic samples of photos are made {MAX_EVAL_SYNTH} px at most "
                                          f"(--size {size} would take about {8e3 * size ** 2 / 2 ** 30:.0f} GB of "
                                          f"memory)\n"), err
    assert main(["eval", "--data", str(folders["photos"]), "--weights", str(tiny_weights), "--size", "48",
                 "--samples", "1", "--json"]) == 0  # within the bound it scores
    assert '"samples": 5' in capsys.readouterr().out


def test_the_real_gopro_pairs_are_pairs(shared_blurred):
    data = open_data(shared_blurred / "gopro_pairs")
    assert data.layout == "pairs" and [s.name for s in data.found] == ["Flower_blur1", "Istanbul_blur1"]
    assert {s.size for s in data.found} == {(1280, 720)} and not data.skipped


# ---------------------------------------------------------------- the streams a resumed run reads on

# Fingerprints of samples of the fixture folders, taken from the data code as it was before each layout got
# a class of its own (and unchanged since): a run resumes from its checkpoint on these streams, so any change
# to what sample i of (seed, folder) is fails here. Per tensor (blurred, frames, clean): mean, standard
# deviation, and the means weighted by a left-right and a top-bottom ramp; then the first and the last
# frame's means. Compared to 1e-5: far below any change of photo, crop, motion or degradation, far above
# the rounding of one float operation done another way.
PINNED = {
    ("photos", "train", 1003, 0): [0.542901, 0.239683, 0.01234, 0.034038, 0.51982, 0.291288, 0.013784, 0.043504,
                                   0.543573, 0.250795, 0.012311, 0.033988, 0.503276, 0.526444],
    ("photos", "train", 1003, 977): [0.531062, 0.245266, -0.011565, 0.003013, 0.508019, 0.274022, 0.002239,
                                     0.007396, 0.522516, 0.249266, -0.004535, 0.006339, 0.503088, 0.514738],
    ("photos", "noisy", 2, 3): [0.497945, 0.259753, -0.033474, -0.000417, 0.491309, 0.278568, -0.032938, 0.000188,
                                0.499315, 0.26613, -0.033137, 2.8e-05, 0.491396, 0.491129],
    ("photos", "validation", 0, 0): [0.554864, 0.241746, 0.00062, -0.011719, 0.534712, 0.261738, -0.000716,
                                     -0.009702, 0.548614, 0.235508, -0.001908, -0.008866, 0.529886, 0.545242],
    ("photos", "item", 0, 0): [0.55366, 0.281501, -0.029075, -0.008318, 0.555901, 0.278873, -0.02914, -0.008829,
                               0.555901, 0.278912, -0.02914, -0.008829, 0.555901, 0.555901],
    ("sequences", "train", 5, 0): [0.459895, 0.122957, 0.009703, 0.017104, 0.456674, 0.143488, 0.009226, 0.017087,
                                   0.46188, 0.128812, 0.010284, 0.017255, 0.448943, 0.462819],
    ("sequences", "train", 5, 123456): [0.473214, 0.128355, 0.018832, 0.001311, 0.467694, 0.144302, 0.017922,
                                        0.001782, 0.473214, 0.128355, 0.018832, 0.001311, 0.460792, 0.470687],
    ("gopro", "train", 5, 1): [0.533603, 0.154338, -0.014832, 0.006879, 0.529183, 0.166925, -0.015254, 0.006769,
                               0.533603, 0.154338, -0.014832, 0.006879, 0.529183, 0.529183],
    ("pairs", "train", 5, 0): [0.550908, 0.145932, -0.013885, 0.017686, 0.548417, 0.164222, -0.01127, 0.019843,
                               0.550908, 0.145932, -0.013885, 0.017686, 0.548417, 0.548417],
}


def fingerprint(blurred, frames, clean, travel=None) -> list[float]:  # the travel is pinned by test_synth
    out = []
    for t in (blurred, frames, clean):
        t = t.double()
        x = torch.linspace(-1, 1, t.shape[-1], dtype=torch.float64)
        y = torch.linspace(-1, 1, t.shape[-2], dtype=torch.float64)[:, None]
        out += [t.mean(), t.std(), (t * x).mean(), (t * y).mean()]
    frames = frames.double()
    out += [frames[..., 0, :, :, :].mean(), frames[..., -1, :, :, :].mean()]
    return [float(v) for v in out]


def _pinned_sample(folders, layout, kind, seed, i):
    data = open_data(folders[layout])
    if kind == "train":
        return data.train_set(32, seed=seed)[i]
    if kind == "noisy":  # SynthConfig overrides, as a run's synth settings give them
        return data.train_set(32, seed=seed, synth={"p_noise": 1.0})[i]
    if kind == "validation":  # three samples stacked
        return tuple(data.make_validation(3, 32).values())
    _, *sample = next(data.items(1, 32))
    return sample


@pytest.mark.parametrize("key", list(PINNED), ids=lambda k: "-".join(map(str, k)))
def test_sample_i_of_a_stream_is_what_it_was(folders, key):
    got = fingerprint(*_pinned_sample(folders, *key))
    np.testing.assert_allclose(got, PINNED[key], rtol=0, atol=1e-5)


def test_fingerprints_tell_neighbouring_samples_apart(folders):
    """The check above can fail: the next index, another seed, or the stream's overrides move them."""
    data = open_data(folders["photos"])
    pinned = PINNED[("photos", "train", 1003, 0)]
    for sample in (data.train_set(32, seed=1003)[1], data.train_set(32, seed=1004)[0],
                   data.train_set(32, seed=1003, synth={"camera_px": 20.0})[0]):
        assert np.abs(np.subtract(fingerprint(*sample), pinned)).max() > 1e-3


@pytest.mark.parametrize("layout, key", [("photos", "photos:7:7:3:32:5"), ("sequences", "sequences:7:7:3:32:1"),
                                         ("pairs", "pairs:7:7:3:32:1")])
def test_the_cached_validation_set_keeps_its_key_and_is_read_back(folders, tmp_path, layout, key):
    from safetensors import safe_open
    from safetensors.torch import save_file

    data = open_data(folders[layout])
    path = tmp_path / "validation.safetensors"
    made = data.validation(path, 3, 32)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["data"] == key  # a run's validation file written before stays valid
    assert list(made) == ["blurred", "frames", "clean"] and len(made["blurred"]) == 3
    zeros = {k: torch.zeros_like(v) for k, v in made.items()}
    save_file(zeros, str(path), metadata={"data": key})  # what is stored under the key is what comes back
    again = data.validation(path, 3, 32)
    assert all(torch.equal(zeros[k], again[k]) for k in made) and made["blurred"].abs().sum() > 0
    other = open_data(folders[layout], frames=5) if layout != "pairs" else None
    if other is not None:  # another frame count is another set: made anew, under its own key
        assert other.validation(path, 3, 32)["frames"].shape[1] == 5
