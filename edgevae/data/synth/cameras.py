"""Camera views of the scene: pinhole projections, rendering, per-camera gain, noise and blur.

Camera 0 looks down from above (top view), camera 1 looks along +y at the front, camera 2 is an
oblique perspective from a high corner, and cameras 3-7 are further perspective views around the
box. Each camera has a fixed textured background and its own gain, offset, noise level and blur,
all drawn from the dataset seed (so a camera looks the same in every video, like an installed
camera). Spheres are drawn as shaded discs, far ones first, with a soft edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevae.data.synth.config import SynthConfig

_CENTER = np.array([0.5, 0.5, 0.5])
_FIXED_VIEWS = (  # (position, up hint) of the first three cameras
    ((0.5, 0.5, 2.9), (0.0, 1.0, 0.0)),  # top
    ((0.5, -1.9, 0.5), (0.0, 0.0, 1.0)),  # front
    ((2.0, -1.1, 1.9), (0.0, 0.0, 1.0)),  # oblique
)
VIEW_NAMES = ("top", "front", "oblique")


@dataclass(frozen=True)
class Camera:
    """One fixed camera.

    Attributes:
        name: modality name (``cam<i>``) and view (``top``, ``front``, ...) in ``view``.
        position: (3,) optical centre; rotation: (3, 3) rows = image right, image down, forward.
        focal: focal length in pixels; size: image side in pixels.
        gain, offset, noise, blur: sensor response ``gain * img + offset + N(0, noise)``, after a
            Gaussian blur of ``blur`` pixels (0 = sharp).
        background: (size, size) float32 texture in [0, 1].
    """

    name: str
    view: str
    position: np.ndarray
    rotation: np.ndarray
    focal: float
    size: int
    gain: float
    offset: float
    noise: float
    blur: float
    background: np.ndarray

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (..., 3) -> pixel column u, row v and depth (...,) each."""
        cam = (points - self.position) @ self.rotation.T  # (..., 3) camera coordinates
        depth = np.maximum(cam[..., 2], 1e-3)
        c = (self.size - 1) / 2.0
        return c + self.focal * cam[..., 0] / depth, c + self.focal * cam[..., 1] / depth, depth

    def describe(self) -> dict[str, object]:
        """JSON-ready parameters (stored in the dataset index)."""
        return {
            "name": self.name,
            "view": self.view,
            "position": [round(float(v), 4) for v in self.position],
            "focal_px": round(self.focal, 3),
            "gain": round(self.gain, 4),
            "offset": round(self.offset, 4),
            "noise": round(self.noise, 4),
            "blur_px": round(self.blur, 4),
        }


def _look_at(position: np.ndarray, up: np.ndarray) -> np.ndarray:
    forward = _CENTER - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def _view(index: int) -> tuple[str, np.ndarray, np.ndarray]:
    if index < len(_FIXED_VIEWS):
        pos, up = _FIXED_VIEWS[index]
        return VIEW_NAMES[index], np.array(pos, float), np.array(up, float)
    j = index - len(_FIXED_VIEWS)  # further views spiral around the box
    azimuth = 0.9 + 2.0 * np.pi * j / 5.0
    elevation = 0.25 + 0.3 * (j % 3)
    d = 2.5
    pos = _CENTER + d * np.array(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
        ]
    )
    return f"persp{j}", pos, np.array([0.0, 0.0, 1.0])


def background_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random texture plus fixed fine grain, (size, size) float32 in about [0.05, 0.4]."""
    coarse = rng.uniform(0.0, 1.0, size=(6, 6))
    axis = np.linspace(0, 5, size)
    rows = np.stack([np.interp(axis, np.arange(6), coarse[:, j]) for j in range(6)], axis=1)
    smooth = np.stack([np.interp(axis, np.arange(6), r) for r in rows])  # (size, size) bilinear
    grain = _blur(rng.normal(0.0, 1.0, size=(1, size, size)), 0.8)[0]
    tex = 0.08 + 0.22 * smooth + 0.04 * grain
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def make_cameras(config: SynthConfig) -> list[Camera]:
    """The dataset's cameras, determined by ``config.seed``, ``cameras`` and ``image_size``."""
    cams = []
    size = config.image_size
    for i in range(config.cameras):
        rng = np.random.default_rng([config.seed, 7_000, i])
        view, position, up = _view(i)
        rotation = _look_at(position, up)
        probe = Camera(view, view, position, rotation, 1.0, size, 1, 0, 0, 0, np.zeros(0))
        corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T.astype(float)
        u, v, _ = probe.project(corners)
        c = (size - 1) / 2.0
        extent = max(np.abs(u - c).max(), np.abs(v - c).max())  # at focal 1
        focal = 0.94 * (size / 2.0) / extent  # the whole box fills the frame
        cams.append(
            Camera(
                name=f"cam{i}",
                view=view,
                position=position,
                rotation=rotation,
                focal=float(focal),
                size=size,
                gain=float(rng.uniform(0.8, 1.25)),
                offset=float(rng.uniform(-0.02, 0.05)),
                noise=float(rng.uniform(0.012, 0.035)),
                blur=float(rng.choice([0.0, 0.6, 1.0, 1.4])),
                background=background_texture(rng, size),
            )
        )
    return cams


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (F, H, W) images, edges replicated."""
    if sigma <= 0:
        return images
    radius = max(1, int(np.ceil(2.5 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(images.dtype)
    h, w = images.shape[1:]
    padded = np.pad(images, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    rows = sum(t * padded[:, i : i + h] for i, t in enumerate(taps))  # blur along H
    padded = np.pad(rows, ((0, 0), (0, 0), (radius, radius)), mode="edge")
    return sum(t * padded[:, :, i : i + w] for i, t in enumerate(taps))  # then along W


def render(
    camera: Camera,
    radii: np.ndarray,
    brightness: np.ndarray,
    positions: np.ndarray,
    visible: np.ndarray,
    illumination: float,
    rng: np.random.Generator,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Render frames of one camera.

    Args:
        camera: the camera.
        radii, brightness: (K,) per object.
        positions: (K, F, 3) object centres at each frame.
        visible: (K, F) bool, objects hidden where False.
        illumination: global light level of the scene.
        rng: source of sensor noise.
        background: texture to use instead of the camera's own (a "different scene").

    Returns:
        (F, H, W) uint8 frames.
    """
    k, f = positions.shape[:2]
    size = camera.size
    bg = camera.background if background is None else background
    img = np.broadcast_to(bg, (f, size, size)).astype(np.float32)
    if k:
        u, v, depth = camera.project(positions)  # (K, F) each
        rho = camera.focal * radii[:, None] / depth  # (K, F) projected radius in pixels
        # Draw each sphere into a (P, P) patch around it instead of the whole frame.
        half = int(np.ceil(rho.max())) + 2
        p = 2 * half + 1
        pad = half + 1
        canvas = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))  # spheres may leave the frame
        offs = np.arange(p)
        frames = np.arange(f)
        order = np.argsort(-depth, axis=0, kind="stable")  # (K, F) far -> near per frame
        for rank in range(k):
            obj = order[rank]  # (F,) which object is drawn at this depth rank per frame
            uu, vv, rr = u[obj, frames], v[obj, frames], rho[obj, frames]
            x0 = np.clip(np.floor(uu).astype(int) - half, -pad, size + pad - p)  # (F,)
            y0 = np.clip(np.floor(vv).astype(int) - half, -pad, size + pad - p)
            cols = (x0[:, None] + offs).astype(np.float32)  # (F, P) pixel coordinates
            rows = (y0[:, None] + offs).astype(np.float32)
            d2 = (cols[:, None, :] - uu[:, None, None]) ** 2 + (
                rows[:, :, None] - vv[:, None, None]
            ) ** 2  # (F, P, P)
            r3 = rr[:, None, None]
            alpha = np.clip(r3 + 0.5 - np.sqrt(d2), 0.0, 1.0)  # soft one-pixel edge
            alpha *= visible[obj, frames][:, None, None]
            shade = 0.55 + 0.45 * np.sqrt(np.clip(1.0 - d2 / (r3 * r3), 0.0, 1.0))  # sphere
            color = brightness[obj][:, None, None] * shade
            fi = frames[:, None, None]
            ri = (y0 + pad)[:, None, None] + offs[None, :, None]
            ci = (x0 + pad)[:, None, None] + offs[None, None, :]
            patch = canvas[fi, ri, ci]
            canvas[fi, ri, ci] = (patch + alpha * (color - patch)).astype(np.float32)
        img = canvas[:, pad:-pad, pad:-pad]
    img = _blur(img, camera.blur)
    img = img * (camera.gain * illumination) + camera.offset
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(camera.noise)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
