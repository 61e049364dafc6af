"""Build python/segfast/data/fashion_mnist_small.npz, the data set segfast ships with.

A stratified subset of Fashion-MNIST: 1,000 training images per class from the 60,000 training
images and 200 test images per class from the 10,000 test images, drawn with a fixed seed and
shuffled (not sorted by class). Images are stored as uint8 (n, 784), labels as uint8 (n,).

    python tools/make_default_data.py [--src /usr/share/datasets/fashion-mnist]

The source is Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) or
any directory holding the four official IDX files. Same source + same seed = same file contents.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "python" / "segfast" / "data" / "fashion_mnist_small.npz"
SEED = 20240611
N_TRAIN_PER_CLASS = 1000
N_TEST_PER_CLASS = 200


def _read_idx():
    # Load datasets.py by path, so the script runs before the C++ extension is built
    # (importing the segfast package would import segfast._core).
    spec = importlib.util.spec_from_file_location("segfast_datasets", ROOT / "python" / "segfast" / "datasets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.read_idx


def _find(src: Path, stem: str) -> Path:
    for p in (src / stem, src / (stem + ".gz")):
        if p.is_file():
            return p
    raise SystemExit(f"{src / stem}[.gz] not found: apt-get install dataset-fashion-mnist")


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices: `per_class` rows of each class drawn without replacement, then shuffled."""
    picks = []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        if len(rows) < per_class:
            raise SystemExit(f"class {c} has {len(rows)} rows, fewer than {per_class}")
        picks.append(rng.choice(rows, size=per_class, replace=False))
    return rng.permutation(np.concatenate(picks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    read_idx = _read_idx()
    rng = np.random.default_rng(SEED)
    arrays = {}
    for split, prefix, per_class in (
        ("train", "train", N_TRAIN_PER_CLASS),
        ("test", "t10k", N_TEST_PER_CLASS),
    ):
        images = read_idx(_find(args.src, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(args.src, f"{prefix}-labels-idx1-ubyte"))
        rows = stratified(labels, per_class, rng)
        arrays[f"X_{split}"] = np.ascontiguousarray(images[rows].reshape(len(rows), 784))
        arrays[f"y_{split}"] = labels[rows].astype(np.uint8)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    size = args.out.stat().st_size
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB): {shapes}")


if __name__ == "__main__":
    main()
