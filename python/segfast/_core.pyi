# Typing stub of segfast's C++ extension (cpp/bindings.cpp, cpp/bindings_testing.cpp and, in
# builds with CUDA, cpp/cuda/bindings_cuda.cpp), so that mypy checks the package's calls into it.
# Arrays are checked in C++ (dtype, C order, shape): the dtypes written here are the ones it takes.
# Keep it in step with the bindings: tests/test_hardening_core.py checks that both name the same things.
from collections.abc import Sequence
from typing import Literal, overload

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_I32 = npt.NDArray[np.int32]
_I64 = npt.NDArray[np.int64]
_U8 = npt.NDArray[np.uint8]
_Bool = npt.NDArray[np.bool_]

# The fused merge adds a stack's models in at most this many blocks when merge_block is 0.
MERGE_BLOCK: int
has_cuda: bool

def has_openmp() -> bool: ...
def available_threads() -> int: ...
def resolve_threads(n_jobs: int) -> int: ...
def gemm_kernel() -> Literal["avx512", "reference"]: ...
def n_params(dims: Sequence[int]) -> int: ...

class EpochSettings:
    """The settings of one train_epoch call (every argument that is not an array)."""

    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    proximal_mu: float
    seed: int
    flip_width: int
    n_jobs: int
    first_model: int
    merge_block: int
    merge_first: int
    merge_pieces: bool
    loss: str  # "cross_entropy" (y: int64 labels) or "mse" / "huber" (y: float32 (n_rows, k) targets)
    huber_delta: float
    def __init__(
        self,
        *,
        batch_size: int,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        proximal_mu: float = 0.0,
        seed: int = 0,
        flip_width: int = 0,
        n_jobs: int = -1,
        first_model: int = 0,
        merge_block: int = 0,
        merge_first: int = 0,
        merge_pieces: bool = False,
        loss: str = "cross_entropy",
        huber_delta: float = 1.0,
    ) -> None: ...

# (mean loss (n_models,), diverged (n_models,)); with merge_weights also merged (n_params,) and,
# with settings.merge_pieces, the pieces (n_pieces, n_params).
@overload
def train_epoch(
    dims: Sequence[int],
    params: _F32,
    velocity: _F32 | None,
    anchor: _F32 | None,
    X: _F32,
    y: _I64,
    order: _I64,
    offsets: _I64,
    active: _U8,
    epoch: _I64,
    settings: EpochSettings,
    start: _F32 | None = None,
    merge_weights: None = None,
) -> tuple[_F64, _Bool]: ...
@overload
def train_epoch(
    dims: Sequence[int],
    params: _F32,
    velocity: _F32 | None,
    anchor: _F32 | None,
    X: _F32,
    y: _I64,
    order: _I64,
    offsets: _I64,
    active: _U8,
    epoch: _I64,
    settings: EpochSettings,
    start: _F32 | None = None,
    *,
    merge_weights: _F64,
) -> tuple[_F64, _Bool, _F64] | tuple[_F64, _Bool, _F64, _F64]: ...
def merge_pieces(n_models: int, block: int, first: int) -> list[tuple[int, int]]: ...
def first_non_finite(X: npt.NDArray[np.float32], n_jobs: int = -1) -> int: ...
def predict_proba(dims: Sequence[int], params: _F32, X: _F32, n_jobs: int, softmax: bool = True) -> _F32: ...
def regression_errors(dims: Sequence[int], params: _F32, X: _F32, y: _F32, n_jobs: int) -> tuple[_F64, _F64]: ...
def clipped_update_sum(params: _F32, global_row: _F32, clip: float, n_jobs: int) -> tuple[_F64, _F64]: ...
def loss_gradient(
    dims: Sequence[int], params: _F32, X: _F32, y: np.ndarray, n_jobs: int, loss: str = ..., huber_delta: float = ...
) -> tuple[float, _F64]: ...
@overload
def evaluate(
    dims: Sequence[int],
    params: _F32,
    X: _F32,
    y: _I64,
    n_jobs: int,
    with_vote: Literal[False] = False,
    vote_sum: None = None,
) -> tuple[_F64, _F64]: ...
@overload
def evaluate(
    dims: Sequence[int],
    params: _F32,
    X: _F32,
    y: _I64,
    n_jobs: int,
    with_vote: Literal[True],
    vote_sum: _F64 | None = None,
) -> tuple[_F64, _F64, _F32]: ...

# merging
def align_stack(
    dims: Sequence[int], params: _F32, reference: int, max_rounds: int, n_jobs: int
) -> tuple[_I32, int]: ...
def weighted_sum(params: _F32, weights: _F64, n_jobs: int) -> _F32: ...
def robust_reduce(params: _F32, trim: int, n_jobs: int) -> _F32: ...
def kmeans(X: _F32, k: int, seed: int, max_iter: int, n_jobs: int) -> tuple[_I32, _F32, float, int]: ...
def pairwise_distances(X: _F32, n_jobs: int) -> _F32: ...
def silhouette(dist: _F32, labels: _I32, k: int) -> float: ...
def preactivation_stats(dims: Sequence[int], params: _F32, X: _F32, n_jobs: int) -> tuple[_F64, _F64]: ...

# ensembles: mode is "proba", "votes" or "log_proba"
@overload
def combine(
    dims: Sequence[int],
    params: _F32,
    X: _F32,
    mode: str,
    model_weights: _F64 | None = None,
    row_weights: _F32 | None = None,
    n_jobs: int = -1,
    with_votes: Literal[False] = False,
) -> _F32: ...
@overload
def combine(
    dims: Sequence[int],
    params: _F32,
    X: _F32,
    mode: str,
    model_weights: _F64 | None = None,
    row_weights: _F32 | None = None,
    n_jobs: int = -1,
    *,
    with_votes: Literal[True],
) -> tuple[_F32, _F32]: ...
@overload
def combine(
    dims: Sequence[int],
    params: _F32,
    X: _F32,
    mode: str,
    model_weights: _F64 | None = None,
    row_weights: _F32 | None = None,
    n_jobs: int = -1,
    with_votes: bool = False,
) -> _F32 | tuple[_F32, _F32]: ...
def knn(X: _F32, refs: _F32, k: int, n_jobs: int = -1) -> tuple[_I64, _F32]: ...

# The CUDA path: cuda_unavailable_reason exists in every build; the rest only where has_cuda.
def cuda_unavailable_reason() -> str: ...
def cuda_device_name() -> str: ...
def cuda_memory_in_use() -> int: ...
def cuda_predict_proba(dims: Sequence[int], params: _F32, X: _F32, log: bool = False) -> _F32: ...
def cuda_evaluate(dims: Sequence[int], params: _F32, X: _F32, y: _I64) -> tuple[_F64, _F64]: ...

class CudaMemoryError(MemoryError): ...

class CudaTrainer:
    """Training data and models resident on the GPU."""

    def __init__(self, dims: Sequence[int], X: _F32, y: _I64) -> None: ...
    def set_models(self, params: _F32) -> None: ...
    def resize_models(self, n_models: int) -> None: ...
    def get_models(self, out: _F32) -> None: ...
    def set_anchor(self, row: _F32 | None) -> None: ...
    def epoch(
        self,
        order: _I64,
        offsets: _I64,
        active: _U8,
        epoch: _I64,
        seed: int,
        batch_size: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        prox: float,
        flip_width: int,
        first_model: int,
        n_jobs: int,
        start: _F32 | None = None,
        merge_weights: _F64 | None = None,
    ) -> tuple[_F64, _Bool] | tuple[_F64, _Bool, _F64]: ...

# _core._testing: hooks into single kernels, for the tests and benchmarks only.
class _TestingModule:
    @staticmethod
    def gemm(
        a: _F32,
        b: _F32,
        c: _F32,
        trans_a: bool = False,
        epilogue: Literal["store", "add", "bias", "bias_relu", "sgd"] = "store",
        bias: _F32 | None = None,
        velocity: _F32 | None = None,
        lr: float = 0.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        anchor: _F32 | None = None,
        prox: float = 0.0,
        reference: bool = False,
    ) -> None: ...
    @staticmethod
    def transpose(a: _F32, reference: bool = False) -> _F32: ...
    @staticmethod
    def max_assignment(
        score: _F32,
        reference: bool = False,
        start: Literal["cold", "prices", "row_duals"] = "cold",
        prices: _F64 | None = None,
        row_duals: _F64 | None = None,
    ) -> tuple[_I32, float]: ...
    @staticmethod
    def cuda_resident_plan(
        dims: Sequence[int], n_active: int, max_rows: int, momentum: bool, one_step: bool = False
    ) -> dict[str, bool | int]: ...

_testing: _TestingModule
