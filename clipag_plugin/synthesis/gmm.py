"""A Gaussian per class at low resolution: the CLIPAG notebook's initialization prior.

The notebook fits one full-covariance Gaussian per Tiny-ImageNet class on 16x16 downsampled
images and starts each generation from a sample. Here the mixture is a small dataclass that can
be fitted from any image folder (:func:`fit_gmm`), saved to / loaded from ``.npz``, and sampled
with a ``torch.Generator``. A covariance is stored as a factor ``L`` (``cov = L L^T + r^2 I``):
``L`` is the Cholesky factor for a full fit (``rank=None``), or the top eigen-directions for a
compact one (the GMM shipped in the package, fitted on scikit-image's sample photos).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "GaussianMixture",
    "fit_gaussians",
    "random_patches",
    "fit_gmm",
    "fit_gmm_from_arrays",
    "shipped_gmm_path",
    "load_gmm",
    "build_shipped_gmm",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SHIPPED_NAME = "gmm_skimage_16.npz"


@dataclass(frozen=True)
class GaussianMixture:
    """``K`` Gaussians over ``3 x r x r`` images in [0, 1], chosen uniformly when sampling."""

    means: torch.Tensor  # (K, D), D = 3 * r * r, float32
    factors: torch.Tensor  # (K, D, R): cov_k = factors_k @ factors_k.T + residual_k^2 I
    residual: torch.Tensor  # (K,)
    names: tuple[str, ...]
    resolution: int = 16

    def __post_init__(self) -> None:
        k, d = self.means.shape
        if d != 3 * self.resolution**2:
            raise ValueError(f"GMM means have dimension {d}, expected 3*{self.resolution}^2={3 * self.resolution**2}")
        if self.factors.shape[:2] != (k, d) or self.residual.shape != (k,) or len(self.names) != k:
            raise ValueError(
                f"GMM arrays disagree: means {tuple(self.means.shape)}, factors {tuple(self.factors.shape)}, "
                f"residual {tuple(self.residual.shape)}, {len(self.names)} names"
            )

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    def sample(
        self, n: int, generator: Optional[torch.Generator] = None, component: Optional[int] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` images ``(n, 3, r, r)`` clamped to [0, 1], and the component each came from."""
        k, d = self.means.shape
        if component is None:
            comp = torch.randint(0, k, (n,), generator=generator)
        else:
            if not 0 <= component < k:
                raise ValueError(f"component {component} out of range; this GMM has {k} ({', '.join(self.names)})")
            comp = torch.full((n,), component, dtype=torch.long)
        rank = self.factors.shape[-1]
        z = torch.randn((n, rank), generator=generator)
        e = torch.randn((n, d), generator=generator)
        x = self.means.float()[comp] + self.residual.float()[comp, None] * e
        factors = self.factors.float()
        for c in comp.unique().tolist():  # one matrix product per component, not a (n, D, R) gather
            rows = (comp == c).nonzero().squeeze(1)
            x[rows] += z[rows] @ factors[c].T
        r = self.resolution
        return x.clamp(0, 1).view(n, 3, r, r), comp

    def save(self, path: str | Path, dtype: str = "float16") -> Path:
        """Write an ``.npz`` (factors in ``dtype``, float16 by default to keep it small)."""
        path = Path(path)
        np.savez_compressed(
            path,
            means=self.means.float().numpy(),
            factors=self.factors.numpy().astype(dtype),
            residual=self.residual.float().numpy(),
            names=np.array(self.names, dtype=str),
            resolution=np.array(self.resolution),
        )
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> "GaussianMixture":
        """Read a mixture written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    means=torch.from_numpy(data["means"].astype(np.float32)),
                    factors=torch.from_numpy(data["factors"].astype(np.float32)),
                    residual=torch.from_numpy(data["residual"].astype(np.float32)),
                    names=tuple(str(n) for n in data["names"]),
                    resolution=int(data["resolution"]),
                )
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: not a GMM file written by `clipag gmm fit` ({err})") from err


def fit_gaussians(
    samples: Sequence[torch.Tensor], rank: Optional[int] = None, shrinkage: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit one Gaussian per ``(n_k, D)`` sample matrix; return ``(means, factors, residual)``.

    ``shrinkage`` is added to the covariance diagonal (keeps it positive definite with few samples).
    ``rank=None`` keeps the full covariance (Cholesky factor); an integer keeps the top ``rank``
    eigen-directions and puts the mean of the other eigenvalues into the isotropic residual.
    """
    means, factors, residuals = [], [], []
    for x in samples:
        x = x.double()
        n, d = x.shape
        if n < 2:
            raise ValueError(f"need at least 2 samples per class to fit a Gaussian, got {n}")
        mu = x.mean(0)
        xc = x - mu
        cov = xc.T @ xc / (n - 1) + shrinkage * torch.eye(d, dtype=x.dtype)
        if rank is None or rank >= d:
            factors.append(torch.linalg.cholesky(cov))
            residuals.append(torch.tensor(0.0, dtype=x.dtype))
        else:
            evals, evecs = torch.linalg.eigh(cov)  # ascending
            evals = evals.clamp(min=0)
            top, rest = evals[d - rank :], evals[: d - rank]
            factors.append(evecs[:, d - rank :] * top.sqrt())
            residuals.append(rest.mean().sqrt())
        means.append(mu)
    return torch.stack(means).float(), torch.stack(factors).float(), torch.stack(residuals).float()


def random_patches(
    image: torch.Tensor, n: int, resolution: int, generator: torch.Generator, min_area: float = 0.25
) -> torch.Tensor:
    """``n`` random square crops (area >= ``min_area`` of the short side squared, random h-flip) of a
    ``(3, H, W)`` image in [0, 1], downsampled (area-averaged) to ``resolution`` -> ``(n, 3*r*r)``."""
    _, h, w = image.shape
    short = min(h, w)
    out = []
    sides = (short * torch.sqrt(min_area + (1 - min_area) * torch.rand(n, generator=generator))).long().clamp(min=1)
    for side in sides.tolist():
        y = int(torch.randint(0, h - side + 1, (1,), generator=generator))
        x = int(torch.randint(0, w - side + 1, (1,), generator=generator))
        patch = image[:, y : y + side, x : x + side]
        if bool(torch.rand(1, generator=generator) < 0.5):
            patch = patch.flip(-1)
        out.append(F.interpolate(patch[None], size=(resolution, resolution), mode="area")[0])
    return torch.stack(out).reshape(n, -1)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    a = np.asarray(array)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    a = a[..., :3]
    scale = 255.0 if a.dtype == np.uint8 else (65535.0 if a.dtype == np.uint16 else 1.0)
    return torch.from_numpy(a.astype(np.float32) / scale).permute(2, 0, 1).contiguous()


def fit_gmm_from_arrays(
    classes: dict[str, Sequence[np.ndarray]],
    resolution: int = 16,
    patches_per_image: int = 64,
    rank: Optional[int] = None,
    seed: int = 0,
    progress: bool = False,
    min_area: float = 0.25,
) -> GaussianMixture:
    """Fit a mixture from ``{class name: [H x W (x 3) images]}`` (uint8 or float in [0, 1]).

    Each image gives ``patches_per_image`` random square crops of at least ``min_area`` of its
    short side squared (1.0: the whole centred square, only flipped at random).
    """
    from tqdm.auto import tqdm

    if not classes:
        raise ValueError("no classes to fit a GMM on")
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for name, images in tqdm(classes.items(), desc="gmm fit", disable=not progress):
        rows = [random_patches(_to_tensor(im), patches_per_image, resolution, generator, min_area) for im in images]
        if not rows:
            raise ValueError(f"class {name!r} has no images")
        data = torch.cat(rows)
        if data.shape[0] <= data.shape[1] and (rank is None):
            warnings.warn(
                f"class {name!r}: {data.shape[0]} patches for a {data.shape[1]}-dim full covariance; the fit leans "
                "on shrinkage (use more images or --patches-per-image)",
                stacklevel=2,
            )
        samples.append(data)
    means, factors, residual = fit_gaussians(samples, rank=rank)
    return GaussianMixture(means, factors, residual, tuple(classes), resolution)


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: cannot read as an image ({err})") from err


def fit_gmm(
    folder: str | Path,
    resolution: int = 16,
    patches_per_image: int = 64,
    rank: Optional[int] = None,
    by: str = "folder",
    seed: int = 0,
    progress: bool = True,
) -> GaussianMixture:
    """Fit a GMM on the images of ``folder``.

    ``by="folder"``: each subfolder is one class (images inside it, recursively), loose images in
    ``folder`` form a class of their own; ``by="image"``: every image is a class (good for a few
    photos, as the shipped GMM). Each image contributes ``patches_per_image`` random crops.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"{folder}: not a folder; pass a folder of images (one subfolder per class)")
    if by not in {"folder", "image"}:
        raise ValueError(f"by={by!r}: choose 'folder' (subfolders are classes) or 'image' (each image a class)")
    groups: dict[str, list[Path]] = {}
    if by == "image":
        for path in _images_in(root, recursive=True):
            groups[str(path.relative_to(root))] = [path]
    else:
        loose = _images_in(root, recursive=False)
        if loose:
            groups[root.name or "images"] = loose
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            found = _images_in(sub, recursive=True)
            if found:
                groups[sub.name] = found
    if not groups:
        raise ValueError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    arrays = {name: [_read(p) for p in paths] for name, paths in groups.items()}
    return fit_gmm_from_arrays(arrays, resolution, patches_per_image, rank, seed, progress)


def shipped_gmm_path() -> Path:
    """Where the GMM shipped with the package lives."""
    return Path(str(resources.files("clipag_plugin") / "synthesis" / "data" / SHIPPED_NAME))


# Priors that ship inside the package, by name (package-relative folder, file name).
NAMED_PRIORS: dict[str, tuple[str, str]] = {
    "photos": ("synthesis/data", SHIPPED_NAME),  # scikit-image's sample photos (the default)
    "miniworld": ("mini/weights", "gmm_world_16.npz"),  # clean mini-world renders (clipag_plugin.mini.prior)
}


def load_gmm(path: Optional[str | Path] = None) -> GaussianMixture:
    """Load ``path`` (a file, or a name from ``NAMED_PRIORS``), or the shipped photo GMM when None."""
    if path is not None and str(path) in NAMED_PRIORS:
        folder, name = NAMED_PRIORS[str(path)]
        path = Path(str(resources.files("clipag_plugin").joinpath(*folder.split("/"), name)))
    target = Path(path) if path is not None else shipped_gmm_path()
    if not target.is_file():
        hint = (
            "rebuild it with `python -m clipag_plugin.synthesis.gmm`"
            if path is None
            else "fit one with `clipag gmm fit FOLDER --out FILE`"
        )
        raise FileNotFoundError(f"GMM file {target} not found; {hint}, or use --init noise")
    return GaussianMixture.load(target)


# scikit-image sample photos used for the shipped GMM (all bundled, no download).
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "camera", "brick", "grass", "gravel", "moon",
)


def build_shipped_gmm(
    out: Optional[str | Path] = None, names: Iterable[str] = SKIMAGE_PHOTOS, patches_per_image: int = 3000,
    rank: int = 32, seed: int = 0,
) -> Path:
    """Fit the compact GMM shipped in the package: one class per scikit-image sample photo."""
    from skimage import data

    arrays = {name: [getattr(data, name)()] for name in names}
    gmm = fit_gmm_from_arrays(arrays, 16, patches_per_image, rank, seed, progress=True)
    return gmm.save(out or shipped_gmm_path())


if __name__ == "__main__":  # python -m clipag_plugin.synthesis.gmm: rebuild the shipped file
    print(build_shipped_gmm())
