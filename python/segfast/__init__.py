"""segfast: train many small MLPs at once, one per data segment, in a C++ core."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import _core, datasets, distributed, schedule, shards, tabular
from ._device import cuda_available
from .align import align
from .cluster import Clustering, cluster, weight_map
from .ensemble import Ensemble
from .merge import merge
from .predict import Evaluation, RegressionEvaluation, evaluate, predict, predict_proba
from .regression_ensemble import RegressionEnsemble
from .rounds import RoundsResult, rounds
from .segments import Segments, segment
from .split import Split, holdout
from .stack import MLPStack
from .train import History, train

try:
    __version__ = _version("segfast-mlp")  # the distribution; the import name is segfast
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"


def __getattr__(name):
    # SegmentClassifier imports scikit-learn (when installed) for its base classes; loading it
    # on first use keeps `import segfast` free of scikit-learn, SciPy and their BLAS/OpenMP.
    if name == "SegmentClassifier":
        from .classifier import SegmentClassifier

        return SegmentClassifier
    if name == "SegmentRegressor":
        from .regressor import SegmentRegressor

        return SegmentRegressor
    raise AttributeError(f"module 'segfast' has no attribute {name!r}")


has_openmp: bool = _core.has_openmp()
has_cuda: bool = _core.has_cuda  # this build has the CUDA path (cuda_available(): and a GPU is here)

__all__ = [
    "MLPStack",
    "Segments",
    "Split",
    "History",
    "Evaluation",
    "RegressionEvaluation",
    "segment",
    "holdout",
    "train",
    "predict_proba",
    "predict",
    "evaluate",
    "datasets",
    "tabular",
    "shards",
    "distributed",
    "merge",
    "align",
    "cluster",
    "weight_map",
    "Clustering",
    "Ensemble",
    "RegressionEnsemble",
    "rounds",
    "RoundsResult",
    "schedule",
    "SegmentClassifier",
    "SegmentRegressor",
    "has_openmp",
    "has_cuda",
    "cuda_available",
    "__version__",
]
