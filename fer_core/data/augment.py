"""Batched augmentation on the training device, and test-time augmentation views.

All geometric transforms (flip, rotation, scale, translation, random resized crop) are composed
into one affine matrix per image and applied with a single `grid_sample` call, so a whole batch is
augmented by a handful of kernels on the GPU instead of per-image PIL calls on the CPU.
Inputs are float images in [0, 1], shape (B, 1, H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from fer_core.options import setting


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float = setting(0.5, "probability of a horizontal flip")
    rotation: float = setting(10.0, "rotation, degrees, uniform in [-r, r]")
    translate: float = setting(0.1, "shift, fraction of the image, uniform in [-t, t] per axis")
    scale: tuple[float, float] = setting((1.0, 1.0), "zoom factor range (>1 zooms in)")
    crop_scale: tuple[float, float] = setting((1.0, 1.0), "random resized crop: area kept")
    crop_ratio: tuple[float, float] = setting((1.0, 1.0), "random resized crop: aspect range")
    brightness: float = setting(0.0, "additive brightness, uniform in [-b, b]")
    contrast: float = setting(0.0, "contrast around the mean, uniform in [1-c, 1+c]")
    noise: float = setting(0.0, "Gaussian noise standard deviation")
    erasing: float = setting(0.0, "probability of random erasing")
    erasing_area: tuple[float, float] = setting((0.02, 0.25), "random erasing: area range")
    # The gap between FER2013's web thumbnails and camera photos (each a probability per image):
    gamma: float = setting(0.0, "gamma exp(u), u uniform in [-g, g] (exposure, camera curves)")
    blur: float = setting(0.0, "probability of a Gaussian blur (focus, motion, small faces)")
    blur_sigma: tuple[float, float] = setting((0.3, 1.2), "blur sigma range, input pixels")
    resample: float = setting(0.0, "probability of down- then up-sampling (few-pixel faces)")
    resample_size: tuple[int, int] = setting((16, 40), "down-sampled side range, one per batch")
    jpeg: float = setting(0.0, "probability of JPEG-style 8x8 DCT quantisation")
    jpeg_quality: tuple[float, float] = setting((20.0, 80.0), "JPEG quality range")

    @staticmethod
    def none() -> AugmentConfig:
        return AugmentConfig(hflip=0.0, rotation=0.0, translate=0.0)

    @staticmethod
    def strong() -> AugmentConfig:
        """The recipe of our shipped model."""
        return AugmentConfig(
            hflip=0.5,
            rotation=15.0,
            translate=0.1,
            scale=(0.9, 1.15),
            crop_scale=(0.8, 1.0),
            crop_ratio=(0.9, 1.1),
            brightness=0.2,
            contrast=0.3,
            noise=0.0,
            erasing=0.5,
        )


def with_photo_degradations(cfg: AugmentConfig) -> AugmentConfig:
    """`cfg` plus the camera-photo degradations: gamma, blur, down-up sampling, JPEG."""
    return replace(cfg, gamma=0.4, blur=0.25, resample=0.25, jpeg=0.3)


@dataclass(frozen=True)
class AugmentDraws:
    """Every random number one batch's augmentation uses, drawn up front: `uniform` (K, B) in
    [0, 1), a column of it per random quantity, plus the per-pixel noise the config asks for.
    Given these, `apply_augmentation` is a pure function, which `torch.compile` can fuse into a
    few kernels (no random generator inside)."""

    uniform: torch.Tensor
    noise: torch.Tensor | None = None  # (B, 1, H, W) standard normal, for `noise`
    erase: torch.Tensor | None = None  # (B, 1, H, W) in [0, 1), random erasing's fill
    resample_size: int = 0  # the side that `resample` shrinks this batch to


def _columns(cfg: AugmentConfig) -> int:
    """How many uniform numbers per image `apply_augmentation` takes under `cfg` (none when it
    changes nothing: an unaugmented run draws nothing from its generator)."""
    geometry = (cfg.hflip > 0) if _is_identity_geometry(cfg) else 9
    photo = (cfg.gamma > 0) + 2 * (cfg.blur > 0) + (cfg.resample > 0) + 2 * (cfg.jpeg > 0)
    return geometry + photo + (cfg.contrast > 0) + (cfg.brightness > 0) + 5 * (cfg.erasing > 0)


def draw_augmentation(
    cfg: AugmentConfig, shape: torch.Size | tuple[int, ...], g: torch.Generator
) -> AugmentDraws:
    """The random numbers `apply_augmentation` takes for a batch of `shape` (B, 1, H, W), from
    `g` (on the batch's device: repeatable runs), in one kernel per kind of number."""
    n, device = shape[0], g.device
    columns = _columns(cfg)
    uniform = (
        torch.rand(columns, n, generator=g, device=device)
        if columns
        else torch.empty(0, n, device=device)
    )
    noise = torch.randn(shape, generator=g, device=device) if cfg.noise > 0 else None
    erase = torch.rand(shape, generator=g, device=device) if cfg.erasing > 0 else None
    size = 0
    if cfg.resample > 0:  # one size per batch, read on the host (resampling to it needs an int)
        size = int(torch.randint(*cfg.resample_size, (1,), generator=g, device=device).item())
    return AugmentDraws(uniform, noise, erase, size)


class _Columns:
    """Hands out a batch's uniform numbers one column (B,) at a time, in a fixed order."""

    def __init__(self, uniform: torch.Tensor) -> None:
        self.uniform = uniform
        self.used = 0

    def take(self, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        column = self.uniform[self.used] * (high - low) + low
        self.used += 1
        return column

    def chosen(self, p: float, dims: int = 4) -> torch.Tensor:
        """(B, 1, ...) bool: which images get a transform applied with probability p."""
        return (self.take() < p).view(-1, *[1] * (dims - 1))


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Augment a batch (B, 1, H, W) of [0, 1] floats; `g` lives on x's device (repeatable runs)."""
    return apply_augmentation(x, cfg, draw_augmentation(cfg, x.shape, g))


def apply_augmentation(x: torch.Tensor, cfg: AugmentConfig, draws: AugmentDraws) -> torch.Tensor:
    """`cfg`'s augmentation of a batch (B, 1, H, W) of [0, 1] floats, with its random numbers."""
    u = _Columns(draws.uniform)
    if _is_identity_geometry(cfg):
        if cfg.hflip > 0:
            x = torch.where(u.chosen(cfg.hflip), x.flip(-1), x)
    else:
        theta = _affine_theta(cfg, u).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = photo_degrade(x, cfg, u, draws.resample_size)
    if cfg.contrast > 0:
        c = u.take(1 - cfg.contrast, 1 + cfg.contrast).view(-1, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean
    if cfg.brightness > 0:
        x = x + u.take(-cfg.brightness, cfg.brightness).view(-1, 1, 1, 1)
    if draws.noise is not None:
        x = x + draws.noise.to(x.dtype) * cfg.noise
    x = x.clamp(0.0, 1.0)
    if draws.erase is not None:
        x = random_erasing(x, cfg.erasing, cfg.erasing_area, u, draws.erase)
    assert u.used == len(draws.uniform), "_columns() must count every number taken"
    return x


def _affine_theta(cfg: AugmentConfig, u: _Columns) -> torch.Tensor:
    """(B, 2, 3) matrices mapping output coordinates to input coordinates (grid_sample's view)."""
    angle = u.take(-cfg.rotation, cfg.rotation) * (math.pi / 180.0)
    zoom = u.take(cfg.scale[0], cfg.scale[1])
    # Random resized crop: a window of `area` of the image with aspect `ratio`, i.e. a zoom of
    # 1/sqrt(area) with anisotropy sqrt(ratio).
    area = u.take(cfg.crop_scale[0], cfg.crop_scale[1])
    ratio = torch.exp(u.take(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])))
    sx = torch.sqrt(area * ratio) / zoom  # fraction of the input seen along x
    sy = torch.sqrt(area / ratio) / zoom
    flip = torch.where(u.take() < cfg.hflip, -1.0, 1.0)
    # Translation: the crop window may move within what is left, plus the translate jitter.
    tx = u.take(-cfg.translate, cfg.translate) * 2 + (1 - sx).clamp(min=0) * u.take(-1, 1)
    ty = u.take(-cfg.translate, cfg.translate) * 2 + (1 - sy).clamp(min=0) * u.take(-1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * sx * flip, -sin * sy, tx], dim=1),
            torch.stack([sin * sx * flip, cos * sy, ty], dim=1),
        ],
        dim=1,
    )
    return theta


def _is_identity_geometry(cfg: AugmentConfig) -> bool:
    return (
        cfg.rotation == 0
        and cfg.translate == 0
        and cfg.scale == (1.0, 1.0)
        and cfg.crop_scale == (1.0, 1.0)
        and cfg.crop_ratio == (1.0, 1.0)
    )


def photo_degrade(
    x: torch.Tensor, cfg: AugmentConfig, u: _Columns, resample_size: int
) -> torch.Tensor:
    """The camera-photo degradations of `cfg` that are switched on, each on a random subset."""
    if cfg.gamma > 0:
        gamma = torch.exp(u.take(-cfg.gamma, cfg.gamma)).view(-1, 1, 1, 1)
        x = x.clamp(0.0, 1.0).pow(gamma.to(x.dtype))
    if cfg.blur > 0:
        sigma = u.take(cfg.blur_sigma[0], cfg.blur_sigma[1])
        x = torch.where(u.chosen(cfg.blur), gaussian_blur(x, sigma, cfg.blur_sigma[1]), x)
    if cfg.resample > 0:
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(resample_size, resample_size), mode="area")
        x = torch.where(
            u.chosen(cfg.resample), F.interpolate(small, size=(h, w), mode="bilinear"), x
        )
    if cfg.jpeg > 0:
        quality = u.take(cfg.jpeg_quality[0], cfg.jpeg_quality[1])
        x = torch.where(u.chosen(cfg.jpeg), jpeg_quantise(x, quality), x)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur each image of (B, 1, H, W) with its own Gaussian sigma (B,), as one grouped conv.
    The kernel reaches 3 x `max_sigma` (the largest sigma drawn can be: no read of the drawn
    ones on the host)."""
    n = x.shape[0]
    radius = max(1, math.ceil(3 * max_sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t[None, :] / sigma[:, None].to(x.dtype)) ** 2)  # (B, k)
    kernel = kernel / kernel.sum(1, keepdim=True)
    flat = F.pad(x.reshape(1, n, *x.shape[-2:]), (radius,) * 4, mode="replicate")
    flat = F.conv2d(flat, kernel.view(n, 1, 1, -1), groups=n)
    flat = F.conv2d(flat, kernel.view(n, 1, -1, 1), groups=n)
    return flat.reshape(x.shape)


_JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56), (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99),
)  # fmt: skip  # the JPEG standard's luminance table (Annex K)


def _dct_matrix(size: int, device, dtype) -> torch.Tensor:
    k = torch.arange(size, device=device, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size)) * math.sqrt(2 / size)
    m[0] /= math.sqrt(2)
    return m.to(dtype)  # orthonormal DCT-II: rows are basis vectors


def jpeg_quantise(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's lossy step on (B, 1, H, W) in [0, 1] (H, W multiples of 8): each 8x8 block's DCT
    coefficients rounded to the luminance table scaled for `quality` (B,) in 1..100."""
    n, _, h, w = x.shape
    d = _dct_matrix(8, x.device, x.dtype)
    table = torch.tensor(_JPEG_LUMA, device=x.device, dtype=x.dtype)
    q = quality.to(x.dtype).clamp(1, 100)
    scale = torch.where(q < 50, 50 / q, 2 - q / 50).view(n, 1, 1, 1, 1)  # libjpeg's rule
    step = (table * scale).clamp(min=1) / 255.0  # (B, 1, 1, 8, 8) in [0, 1] units
    blocks = x.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # (B, H/8, W/8, 8, 8)
    coeff = d @ (blocks - 0.5) @ d.T
    blocks = d.T @ (torch.round(coeff / step) * step) @ d + 0.5
    return blocks.permute(0, 1, 3, 2, 4).reshape(n, 1, h, w).clamp(0.0, 1.0)


def random_erasing(
    x: torch.Tensor, p: float, area: tuple[float, float], u: _Columns, fill: torch.Tensor
) -> torch.Tensor:
    """Replace one random rectangle per chosen image with `fill`, uniform noise (Zhong et al.
    2017)."""
    n, _, h, w = x.shape
    frac = u.take(area[0], area[1])
    aspect = torch.exp(u.take(math.log(0.3), math.log(3.3)))
    eh = (torch.sqrt(frac * aspect) * h).clamp(1, h)
    ew = (torch.sqrt(frac / aspect) * w).clamp(1, w)
    top = u.take() * (h - eh)
    left = u.take() * (w - ew)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (
        (rows >= top.view(n, 1, 1))
        & (rows < (top + eh).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1))
        & (cols < (left + ew).view(n, 1, 1))
    )
    mask = (inside & u.chosen(p, dims=3)).unsqueeze(1)  # (B, 1, H, W)
    return torch.where(mask, fill.to(x.dtype), x)


def mix_batch(
    x: torch.Tensor,
    targets: torch.Tensor,
    mixup_alpha: float,
    cutmix_alpha: float,
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix (one or the other per batch, chosen at random when both are on).

    targets are (B, K) probabilities; returns the mixed images and mixed targets.
    """
    n, _, h, w = x.shape
    device = x.device
    perm = torch.randperm(n, generator=g, device=device)
    use_cutmix = cutmix_alpha > 0 and (
        mixup_alpha <= 0 or torch.rand(1, generator=g, device=device).item() < 0.5
    )
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    # One Beta(alpha, alpha) draw for the batch, via two Gamma draws (seeded, on device).
    ga = torch._standard_gamma(torch.full((2,), alpha, device=device), generator=g)
    lam = (ga[0] / ga.sum()).item()
    if use_cutmix:
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy = int(torch.randint(h, (1,), generator=g, device=device).item())
        cx = int(torch.randint(w, (1,), generator=g, device=device).item())
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * targets + (1 - lam) * targets[perm]


# ----------------------------------------------------------------------------- test time

TTA_MODES: tuple[str, ...] = ("none", "flip", "crops")


def tta_views(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Stack test-time views of a batch: (V, B, 1, H, W).

    none: the image. flip: image and mirror. crops: ten-crop style, the image and four 2-pixel
    shifts (up, down, left, right, padded with the border) and the mirror of each.
    """
    if mode == "none":
        return x.unsqueeze(0)
    if mode == "flip":
        return torch.stack([x, x.flip(-1)])
    if mode == "crops":
        s = 2
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        h, w = x.shape[-2:]
        shifts = [(s, s), (0, s), (2 * s, s), (s, 0), (s, 2 * s)]
        views = [padded[..., dy : dy + h, dx : dx + w] for dy, dx in shifts]
        views += [v.flip(-1) for v in views]
        return torch.stack(views)
    raise ValueError(f"unknown TTA mode {mode!r}: choose one of {', '.join(TTA_MODES)}")
