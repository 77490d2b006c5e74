"""The per-photo motion score: how far a clip's frames move, in pixels."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from blur2clip.motion import motion_px


def texture(h: int = 360, w: int = 640, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    blocks = rng.random((h // 12 + 1, w // 12 + 1, 3)).repeat(12, 0).repeat(12, 1)[:h, :w]
    y, x = np.mgrid[0:h, 0:w]
    img = 0.6 * blocks + 0.4 * np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 9 + y / 13)], -1)
    return Image.fromarray((img * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))


def shifted(im: Image.Image, dx: float, dy: float) -> np.ndarray:
    moved = im.transform(im.size, Image.AFFINE, (1, 0, dx, 0, 1, dy), resample=Image.BICUBIC)
    return np.asarray(moved, dtype=np.float32) / 255


def test_frames_that_do_not_move_score_zero():
    still = shifted(texture(), 0, 0)
    assert motion_px(np.stack([still] * 7)) < 0.01
    assert motion_px(still[None]) == 0.0
    noisy = np.clip(still + np.random.default_rng(1).normal(0, 0.01, still.shape), 0, 1).astype(np.float32)
    assert motion_px([still, noisy]) < 0.3  # noise is not motion


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, 10.5), (18, 18), (40, 0)])
def test_a_moving_camera_scores_its_travel(dx, dy):
    im = texture()
    frames = [shifted(im, 0, 0), shifted(im, dx / 2, dy / 2), shifted(im, dx, dy)]
    assert motion_px(frames) == pytest.approx(np.hypot(dx, dy), rel=0.12, abs=0.4)


def test_a_small_subject_moving_on_a_still_background_scores_the_subject():
    im = texture()
    first = shifted(im, 0, 0)
    last = first.copy()
    last[100:200, 200:300] = shifted(im, 12, 5)[100:200, 200:300]  # a 100 px square moves 13 px
    assert motion_px([first, last]) == pytest.approx(13, rel=0.15)


@pytest.mark.parametrize("h, w", [(48, 64), (20, 30)])
def test_a_photo_smaller_than_a_tile_scores_its_travel(h, w):
    im = texture(h, w)
    assert motion_px([shifted(im, 0, 0), shifted(im, 3, 0)]) == pytest.approx(3, rel=0.2)
    assert motion_px([shifted(im, 0, 0)] * 2) < 0.01
    assert motion_px(np.zeros((2, 12, 12, 3), np.float32)) == 0.0  # under MIN_TILE


def test_uint8_frames_and_big_photos_score_in_photo_pixels():
    im = texture(1080, 1920)
    frames = (np.stack([shifted(im, 0, 0), shifted(im, 24, 0)]) * 255).astype(np.uint8)
    assert motion_px(frames) == pytest.approx(24, rel=0.12)
