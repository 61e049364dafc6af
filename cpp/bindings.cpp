// The Python bindings of the CPU kernels (the CUDA path's are in cuda/bindings_cuda.cpp, the
// hooks into single kernels for tests and benchmarks, _core._testing, in bindings_testing.cpp).
// Every array is checked (py_arrays.h: dtype, contiguity, shape, with the shapes in the
// message) before a kernel sees a pointer; the GIL is released only
// around the kernels, and numpy results are built after it is taken back.
// The Python layer (python/segfast) checks values (finite, label ranges, segment sizes);
// these checks guard the memory safety of the kernels against any caller.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "align.h"
#include "arch.h"
#include "combine.h"
#include "dispatch.h"
#include "finite.h"
#include "gradient.h"
#include "kmeans.h"
#include "knn.h"
#include "predict.h"
#include "py_arrays.h"
#include "reduce.h"
#include "threads.h"
#include "train.h"

namespace py = pybind11;
using namespace segfast;
using namespace segfast::py_arrays;

namespace {

// The settings of one epoch call, as Python passes them (_core.EpochSettings): everything that is
// not an array. They become the kernel's EpochConfig and the fused merge's options.
struct EpochSettings {
    int batch_size = 32;
    float lr = 0.f, momentum = 0.f, weight_decay = 0.f;
    float proximal_mu = 0.f;  // the proximal term's coefficient; used only with an anchor
    std::uint64_t seed = 0;
    int flip_width = 0;                  // > 0: random left-right flips of rows seen as images of this width
    int n_jobs = -1;                     // threads, as resolve_threads reads them
    std::int64_t first_model = 0;        // global index of model 0: keys the random streams
    std::int64_t merge_block = 0;        // with merge_weights: models per merge block (0: ceil(n / MERGE_BLOCK))
    std::int64_t merge_first = 0;        // with merge_weights: position of model 0 in a larger call
    bool merge_pieces = false;           // with merge_weights: also return the merge's pieces
    std::string loss = "cross_entropy";  // or "mse" / "huber": y is then (n_rows, k) float32 targets
    float huber_delta = 1.f;
};

LossSpec loss_of(const EpochSettings& set) {
    if (set.loss == "cross_entropy") return {};
    if (set.loss != "mse" && set.loss != "huber")
        throw py::value_error("loss must be 'cross_entropy', 'mse' or 'huber', got '" + set.loss + "'");
    if (!(set.huber_delta > 0.f) || !std::isfinite(set.huber_delta))
        throw py::value_error("huber_delta must be a finite number > 0, got " + std::to_string(set.huber_delta));
    return {set.loss == "mse" ? Loss::Mse : Loss::Huber, set.huber_delta};
}

py::tuple train_epoch_py(const std::vector<int>& dims, py::handle params_obj, py::handle velocity_obj,
                         py::handle anchor_obj, py::handle x_obj, py::handle y_obj, py::handle order_obj,
                         py::handle offsets_obj, py::handle active_obj, py::handle epoch_obj, const EpochSettings& set,
                         py::handle start_obj, py::handle merge_weights_obj) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)}, true);
    const py::ssize_t n_models = params.shape(0);
    float* velocity = nullptr;
    Array<float> vel;
    if (!velocity_obj.is_none()) {
        vel = expect<float>(velocity_obj, "velocity", {n_models, static_cast<py::ssize_t>(arch.n_params)}, true);
        velocity = vel.mutable_data();
    }
    const float* anchor = nullptr;
    Array<float> anc;
    if (!anchor_obj.is_none()) {
        anc = expect<float>(anchor_obj, "anchor", {n_models, static_cast<py::ssize_t>(arch.n_params)});
        anchor = anc.data();
    }
    auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
    const py::ssize_t n_rows = x.shape(0);
    const LossSpec loss = loss_of(set);
    Array<std::int64_t> y;  // class labels, or
    Array<float> targets;   // regression targets
    if (loss.kind == Loss::CrossEntropy) {
        y = expect<std::int64_t>(y_obj, "y", {n_rows});
    } else {
        targets = expect<float>(y_obj, "y", {n_rows, arch.n_out()});
        if (first_non_finite(targets.data(), static_cast<std::size_t>(targets.size()), 1) >= 0)
            throw py::value_error("y holds NaN or inf: regression targets must be finite");
    }
    auto order = expect<std::int64_t>(order_obj, "order", {-1});
    auto offsets = expect<std::int64_t>(offsets_obj, "offsets", {n_models + 1});
    auto active = expect<std::uint8_t>(active_obj, "active", {n_models});
    auto epoch = expect<std::int64_t>(epoch_obj, "epoch", {n_models});
    check_epoch(arch, n_models, n_rows, order, offsets, set.batch_size, set.flip_width);
    if (loss.kind == Loss::CrossEntropy) check_labels(y.data(), n_rows, arch.n_out());

    py::array_t<double> mean_loss(n_models);
    py::array_t<std::uint8_t> diverged(n_models);
    Array<float> start;
    const float* start_row = nullptr;
    if (!start_obj.is_none()) {
        start = expect<float>(start_obj, "start", {static_cast<py::ssize_t>(arch.n_params)});
        start_row = start.data();
    }
    const EpochInputs in{x.data(),      loss.kind == Loss::CrossEntropy ? y.data() : nullptr,
                         order.data(),  offsets.data(),
                         active.data(), epoch.data(),
                         start_row,     loss.kind == Loss::CrossEntropy ? nullptr : targets.data()};
    const SgdStep sgd{set.lr, set.momentum, set.weight_decay, set.proximal_mu};
    const EpochConfig cfg{
        set.batch_size, sgd, set.seed, set.flip_width, set.first_model, resolve_threads(set.n_jobs), loss};
    EpochResult out{mean_loss.mutable_data(), diverged.mutable_data()};
    Array<double> merge_weights;
    py::array_t<double> merged, pieces;
    if (!merge_weights_obj.is_none()) {
        merge_weights = expect<double>(merge_weights_obj, "merge_weights", {n_models});
        if (set.merge_block < 0 || set.merge_first < 0)
            throw py::value_error("merge_block and merge_first must be >= 0");
        merged = py::array_t<double>(static_cast<py::ssize_t>(arch.n_params));
        out.merge_weights = merge_weights.data();
        out.merge_block = set.merge_block;
        out.merge_first = set.merge_first;
        out.merged = merged.mutable_data();
        if (set.merge_pieces) {
            const auto n_pieces = merge_pieces(static_cast<int>(n_models), set.merge_block, set.merge_first).size();
            pieces = py::array_t<double>({static_cast<py::ssize_t>(n_pieces), static_cast<py::ssize_t>(arch.n_params)});
            out.pieces = pieces.mutable_data();
        }
    }
    float* p = params.mutable_data();
    {
        py::gil_scoped_release release;
        train_epoch(arch, p, velocity, anchor, static_cast<int>(n_models), in, cfg, out);
    }
    py::object flags = diverged.attr("astype")("bool");
    if (merge_weights_obj.is_none()) return py::make_tuple(mean_loss, flags);
    if (set.merge_pieces) return py::make_tuple(mean_loss, flags, merged, pieces);
    return py::make_tuple(mean_loss, flags, merged);
}

// softmax: class probabilities; without, the last layer's values (a regression stack's predictions).
py::array_t<float> predict_outputs_py(const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, int n_jobs,
                                      bool softmax) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)});
    auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
    const py::ssize_t n_models = params.shape(0), n_rows = x.shape(0);
    py::array_t<float> outputs({n_models, n_rows, static_cast<py::ssize_t>(arch.n_out())});
    float* out = outputs.mutable_data();
    {
        py::gil_scoped_release release;
        predict_outputs(arch, params.data(), static_cast<int>(n_models), x.data(), n_rows, out, softmax,
                        resolve_threads(n_jobs));
    }
    return outputs;
}

// Per model and output, the summed squared and absolute errors against float targets y (n_rows, k).
py::tuple regression_errors_py(const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, py::handle y_obj,
                               int n_jobs) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)});
    auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
    const py::ssize_t n_models = params.shape(0), n_rows = x.shape(0), k = arch.n_out();
    auto t = expect<float>(y_obj, "y", {n_rows, k});
    py::array_t<double> sq_err({n_models, k}), abs_err({n_models, k});
    double* sq = sq_err.mutable_data();
    double* ab = abs_err.mutable_data();
    {
        py::gil_scoped_release release;
        regression_errors(arch, params.data(), static_cast<int>(n_models), x.data(), t.data(), n_rows, sq, ab,
                          resolve_threads(n_jobs));
    }
    return py::make_tuple(sq_err, abs_err);
}

// (mean loss, gradient (P,) float64) of one model over rows X against y: labels, or targets
// (n_rows, k) float32 with loss "mse" or "huber".
py::tuple loss_gradient_py(const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, py::handle y_obj,
                           int n_jobs, const std::string& loss_name, float huber_delta) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {static_cast<py::ssize_t>(arch.n_params)});
    auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
    const py::ssize_t n_rows = x.shape(0);
    EpochSettings set;
    set.loss = loss_name;
    set.huber_delta = huber_delta;
    const LossSpec loss = loss_of(set);
    Array<std::int64_t> y;
    Array<float> targets;
    if (loss.kind == Loss::CrossEntropy) {
        y = expect<std::int64_t>(y_obj, "y", {n_rows});
        check_labels(y.data(), n_rows, arch.n_out());
    } else {
        targets = expect<float>(y_obj, "y", {n_rows, arch.n_out()});
    }
    py::array_t<double> grad(static_cast<py::ssize_t>(arch.n_params));
    double* g = grad.mutable_data();
    double mean = 0.0;
    {
        py::gil_scoped_release release;
        mean = loss_gradient(arch, params.data(), x.data(), loss.kind == Loss::CrossEntropy ? y.data() : nullptr,
                             loss.kind == Loss::CrossEntropy ? nullptr : targets.data(), n_rows, loss, g,
                             resolve_threads(n_jobs));
    }
    return py::make_tuple(mean, grad);
}

// with_vote also returns the models' soft vote (their summed probabilities, combine's "proba")
// from the same forward pass: what a round's val_segments needs, at half the cost of two passes.
// vote_sum (n, C) float64, updated in place: the vote's sum continues from it (segfast.distributed
// scores the segment models block by block where they trained, with the bits of one call).
py::tuple evaluate_py(const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, py::handle y_obj,
                      int n_jobs, bool with_vote, py::handle vote_sum_obj) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)});
    auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
    const py::ssize_t n_models = params.shape(0), n_rows = x.shape(0);
    auto y = expect<std::int64_t>(y_obj, "y", {n_rows});
    check_labels(y.data(), n_rows, arch.n_out());
    py::array_t<double> loss(n_models), accuracy(n_models);
    const ModelScores scores{y.data(), loss.mutable_data(), accuracy.mutable_data()};
    py::array_t<float> vote(with_vote ? std::vector<py::ssize_t>{n_rows, static_cast<py::ssize_t>(arch.n_out())}
                                      : std::vector<py::ssize_t>{0});
    float* summed = with_vote ? vote.mutable_data() : nullptr;
    Array<double> vote_sum;
    if (!vote_sum_obj.is_none()) {
        if (!with_vote) throw py::value_error("vote_sum needs with_vote=True");
        vote_sum = expect<double>(vote_sum_obj, "vote_sum", {n_rows, static_cast<py::ssize_t>(arch.n_out())}, true);
    }
    double* running = vote_sum_obj.is_none() ? nullptr : vote_sum.mutable_data();
    {
        py::gil_scoped_release release;
        if (with_vote)
            combine(arch, params.data(), static_cast<int>(n_models), x.data(), n_rows, Combine::Proba, nullptr, nullptr,
                    summed, resolve_threads(n_jobs), nullptr, &scores, running);
        else
            evaluate(arch, params.data(), static_cast<int>(n_models), x.data(), y.data(), n_rows, scores.loss,
                     scores.accuracy, resolve_threads(n_jobs));
    }
    if (with_vote) return py::make_tuple(loss, accuracy, vote);
    return py::make_tuple(loss, accuracy);
}

py::ssize_t first_non_finite_py(py::handle x_obj, int n_jobs) {
    auto x = expect<float>(x_obj, "X", {-1, -1});
    const float* p = x.data();
    const std::size_t n = static_cast<std::size_t>(x.size());
    py::gil_scoped_release release;
    return first_non_finite(p, n, resolve_threads(n_jobs));
}

// ---- merging ----------------------------------------------------------------------------

py::tuple align_stack_py(const std::vector<int>& dims, py::handle params_obj, int reference, int max_rounds,
                         int n_jobs) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)}, true);
    const py::ssize_t n = params.shape(0);
    if (!all_finite(params.data(), static_cast<std::size_t>(params.size())))
        throw py::value_error("params must be finite (NaN or inf found)");
    if (reference < 0 || reference >= n)
        throw py::value_error("reference must be a model index in [0, " + std::to_string(n) + ")");
    if (max_rounds < 0) throw py::value_error("max_rounds must be >= 0");
    py::array_t<int> perms({n, static_cast<py::ssize_t>(hidden_units(arch))});
    float* p = params.mutable_data();
    int* out = perms.mutable_data();
    int rounds;
    {
        py::gil_scoped_release release;
        rounds = align_stack(arch, p, static_cast<int>(n), reference, max_rounds, out, resolve_threads(n_jobs));
    }
    return py::make_tuple(perms, rounds);
}

py::array_t<float> weighted_sum_py(py::handle params_obj, py::handle weights_obj, int n_jobs) {
    auto params = expect<float>(params_obj, "params", {-1, -1});
    auto weights = expect<double>(weights_obj, "weights", {params.shape(0)});
    py::array_t<float> out(params.shape(1));
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        weighted_sum(params.data(), static_cast<int>(params.shape(0)), params.shape(1), weights.data(), o,
                     resolve_threads(n_jobs));
    }
    return out;
}

py::tuple clipped_update_sum_py(py::handle params_obj, py::handle global_obj, double clip, int n_jobs) {
    auto params = expect<float>(params_obj, "params", {-1, -1});
    auto global = expect<float>(global_obj, "global", {params.shape(1)});
    if (!(clip > 0.0) || !std::isfinite(clip)) throw py::value_error("clip must be a finite number > 0");
    py::array_t<double> out(params.shape(1)), norms(params.shape(0));
    double* o = out.mutable_data();
    double* n = norms.mutable_data();
    {
        py::gil_scoped_release release;
        clipped_update_sum(params.data(), static_cast<int>(params.shape(0)), params.shape(1), global.data(), clip, o, n,
                           resolve_threads(n_jobs));
    }
    return py::make_tuple(out, norms);
}

py::array_t<float> robust_reduce_py(py::handle params_obj, int trim, int n_jobs) {
    auto params = expect<float>(params_obj, "params", {-1, -1});
    const int n = static_cast<int>(params.shape(0));
    if (trim >= 0 && 2 * trim >= n)
        throw py::value_error("trimming " + std::to_string(trim) + " models from each end leaves none of " +
                              std::to_string(n));
    py::array_t<float> out(params.shape(1));
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        if (trim < 0) coordinate_median(params.data(), n, params.shape(1), o, resolve_threads(n_jobs));
        else trimmed_mean(params.data(), n, params.shape(1), trim, o, resolve_threads(n_jobs));
    }
    return out;
}

py::tuple kmeans_py(py::handle x_obj, int k, std::uint64_t seed, int max_iter, int n_jobs) {
    auto x = expect<float>(x_obj, "X", {-1, -1});
    if (!all_finite(x.data(), static_cast<std::size_t>(x.size())))
        throw py::value_error("X must be finite (NaN or inf found)");
    const int n = static_cast<int>(x.shape(0)), d = static_cast<int>(x.shape(1));
    if (k < 1 || k > n) throw py::value_error("k must be in [1, " + std::to_string(n) + "], got " + std::to_string(k));
    if (max_iter < 1) throw py::value_error("max_iter must be >= 1");
    py::array_t<int> labels(n);
    py::array_t<float> centroids({k, d});
    int* l = labels.mutable_data();
    float* c = centroids.mutable_data();
    KMeansStats stats;
    {
        py::gil_scoped_release release;
        stats = kmeans(x.data(), n, d, k, seed, max_iter, resolve_threads(n_jobs), l, c);
    }
    return py::make_tuple(labels, centroids, stats.inertia, stats.iterations);
}

py::array_t<float> pairwise_distances_py(py::handle x_obj, int n_jobs) {
    auto x = expect<float>(x_obj, "X", {-1, -1});
    if (!all_finite(x.data(), static_cast<std::size_t>(x.size())))
        throw py::value_error("X must be finite (NaN or inf found)");
    const py::ssize_t n = x.shape(0);
    py::array_t<float> dist({n, n});
    float* out = dist.mutable_data();
    {
        py::gil_scoped_release release;
        pairwise_distances(x.data(), static_cast<int>(n), static_cast<int>(x.shape(1)), out, resolve_threads(n_jobs));
    }
    return dist;
}

double silhouette_py(py::handle dist_obj, py::handle labels_obj, int k) {
    auto dist = expect<float>(dist_obj, "dist", {-1, -1});
    const py::ssize_t n = dist.shape(0);
    if (dist.shape(1) != n) throw py::value_error("dist must be square, got " + shape_of(dist));
    auto labels = expect<int>(labels_obj, "labels", {n});
    for (py::ssize_t i = 0; i < n; ++i)
        if (labels.data()[i] < 0 || labels.data()[i] >= k) throw py::value_error("labels must be in [0, k)");
    py::gil_scoped_release release;
    return silhouette(dist.data(), static_cast<int>(n), labels.data(), k);
}

py::tuple preactivation_stats_py(const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, int n_jobs) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)});
    auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
    if (x.shape(0) < 2) throw py::value_error("X needs at least 2 rows to measure a spread");
    const py::ssize_t n = params.shape(0);
    py::array_t<double> mean({n, static_cast<py::ssize_t>(hidden_units(arch))});
    py::array_t<double> stddev({n, static_cast<py::ssize_t>(hidden_units(arch))});
    double* m = mean.mutable_data();
    double* s = stddev.mutable_data();
    {
        py::gil_scoped_release release;
        preactivation_stats(arch, params.data(), static_cast<int>(n), x.data(), x.shape(0), m, s,
                            resolve_threads(n_jobs));
    }
    return py::make_tuple(mean, stddev);
}

// ---- ensembles ----------------------------------------------------------------------------

py::object combine_py(const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, const std::string& mode,
                      py::handle model_weights_obj, py::handle row_weights_obj, int n_jobs, bool with_votes) {
    const Arch arch = arch_of(dims);
    auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)});
    auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
    const py::ssize_t n_models = params.shape(0), n_rows = x.shape(0);
    Combine m;
    if (mode == "proba") m = Combine::Proba;
    else if (mode == "votes") m = Combine::Votes;
    else if (mode == "log_proba") m = Combine::LogProba;
    else throw py::value_error("mode must be 'proba', 'votes' or 'log_proba', got '" + mode + "'");
    Array<double> mw;
    Array<float> rw;
    const double* model_weights = nullptr;
    const float* row_weights = nullptr;
    if (!model_weights_obj.is_none()) {
        mw = expect<double>(model_weights_obj, "model_weights", {n_models});
        model_weights = mw.data();
    }
    if (!row_weights_obj.is_none()) {
        rw = expect<float>(row_weights_obj, "row_weights", {n_rows, n_models});
        row_weights = rw.data();
    }
    py::array_t<float> out({n_rows, static_cast<py::ssize_t>(arch.n_out())});
    py::array_t<float> votes(with_votes ? std::vector<py::ssize_t>{n_rows, static_cast<py::ssize_t>(arch.n_out())}
                                        : std::vector<py::ssize_t>{0});
    float* o = out.mutable_data();
    float* v = with_votes ? votes.mutable_data() : nullptr;
    {
        py::gil_scoped_release release;
        combine(arch, params.data(), static_cast<int>(n_models), x.data(), n_rows, m, model_weights, row_weights, o,
                resolve_threads(n_jobs), v);
    }
    if (with_votes) return py::make_tuple(out, votes);
    return std::move(out);
}

py::tuple knn_py(py::handle queries_obj, py::handle refs_obj, int k, int n_jobs) {
    auto refs = expect<float>(refs_obj, "reference rows", {-1, -1});
    auto queries = expect<float>(queries_obj, "X", {-1, refs.shape(1)});
    if (k < 1 || k > refs.shape(0))
        throw py::value_error("k must be in [1, " + std::to_string(refs.shape(0)) + "], got " + std::to_string(k));
    const py::ssize_t n_q = queries.shape(0);
    py::array_t<std::int64_t> idx({n_q, static_cast<py::ssize_t>(k)});
    py::array_t<float> dist({n_q, static_cast<py::ssize_t>(k)});
    std::int64_t* i = idx.mutable_data();
    float* d = dist.mutable_data();
    {
        py::gil_scoped_release release;
        knn(queries.data(), n_q, refs.data(), refs.shape(0), static_cast<int>(refs.shape(1)), k, i, d,
            resolve_threads(n_jobs));
    }
    return py::make_tuple(idx, dist);
}

}  // namespace

void bind_testing(py::module_& testing);  // bindings_testing.cpp
#ifdef SEGFAST_WITH_CUDA
void bind_cuda(py::module_& mod, py::module_& testing);  // cuda/bindings_cuda.cpp
#endif

PYBIND11_MODULE(_core, mod) {
    mod.doc() = "segfast's C++ kernels; use the segfast package, not this module.";
    py::module_ testing = mod.def_submodule("_testing",
                                            "Hooks into single kernels for segfast's tests and benchmarks.");
    bind_testing(testing);
    mod.def("has_openmp", &has_openmp);
#ifdef SEGFAST_WITH_CUDA
    mod.attr("has_cuda") = true;
    bind_cuda(mod, testing);
#else
    mod.attr("has_cuda") = false;
    mod.def("cuda_unavailable_reason", [] { return std::string("this build of segfast has no CUDA"); });
#endif
    mod.def("available_threads", &available_threads);
    mod.def("resolve_threads", &resolve_threads, py::arg("n_jobs"));
    mod.def("gemm_kernel", [] { return std::string(cpu_kernels().name); });
    mod.def("n_params", [](const std::vector<int>& dims) { return arch_of(dims).n_params; }, py::arg("dims"));
    py::class_<EpochSettings>(mod, "EpochSettings",
                              "The settings of one train_epoch call (every argument that is not an array).")
        .def(py::init([](int batch_size, float lr, float momentum, float weight_decay, float proximal_mu,
                         std::uint64_t seed, int flip_width, int n_jobs, std::int64_t first_model,
                         std::int64_t merge_block, std::int64_t merge_first, bool merge_pieces, std::string loss,
                         float huber_delta) {
                 return EpochSettings{batch_size,  lr,           momentum,        weight_decay, proximal_mu,
                                      seed,        flip_width,   n_jobs,          first_model,  merge_block,
                                      merge_first, merge_pieces, std::move(loss), huber_delta};
             }),
             py::kw_only(), py::arg("batch_size"), py::arg("lr"), py::arg("momentum") = 0.f,
             py::arg("weight_decay") = 0.f, py::arg("proximal_mu") = 0.f, py::arg("seed") = 0,
             py::arg("flip_width") = 0, py::arg("n_jobs") = -1, py::arg("first_model") = 0, py::arg("merge_block") = 0,
             py::arg("merge_first") = 0, py::arg("merge_pieces") = false, py::arg("loss") = "cross_entropy",
             py::arg("huber_delta") = 1.f)
        .def_readwrite("batch_size", &EpochSettings::batch_size)
        .def_readwrite("lr", &EpochSettings::lr)
        .def_readwrite("momentum", &EpochSettings::momentum)
        .def_readwrite("weight_decay", &EpochSettings::weight_decay)
        .def_readwrite("proximal_mu", &EpochSettings::proximal_mu)
        .def_readwrite("seed", &EpochSettings::seed)
        .def_readwrite("flip_width", &EpochSettings::flip_width)
        .def_readwrite("n_jobs", &EpochSettings::n_jobs)
        .def_readwrite("first_model", &EpochSettings::first_model)
        .def_readwrite("merge_block", &EpochSettings::merge_block)
        .def_readwrite("merge_first", &EpochSettings::merge_first)
        .def_readwrite("merge_pieces", &EpochSettings::merge_pieces)
        .def_readwrite("loss", &EpochSettings::loss)
        .def_readwrite("huber_delta", &EpochSettings::huber_delta);
    mod.def("train_epoch", &train_epoch_py, py::arg("dims"), py::arg("params"), py::arg("velocity"), py::arg("anchor"),
            py::arg("X"), py::arg("y"), py::arg("order"), py::arg("offsets"), py::arg("active"), py::arg("epoch"),
            py::arg("settings"), py::arg("start") = py::none(), py::arg("merge_weights") = py::none(),
            "with merge_weights: returns (loss, diverged, merged) and, with settings.merge_pieces, the merge's "
            "pieces (merge_pieces of cpp/train.h) too");
    mod.attr("MERGE_BLOCK") = kMergeBlocks;  // blocks of a fused merge when merge_block is 0
    mod.def("merge_pieces", &merge_pieces, py::arg("n_models"), py::arg("block"), py::arg("first"));
    mod.def("first_non_finite", &first_non_finite_py, py::arg("X"), py::arg("n_jobs") = -1);
    mod.def("predict_proba", &predict_outputs_py, py::arg("dims"), py::arg("params"), py::arg("X"), py::arg("n_jobs"),
            py::arg("softmax") = true);
    mod.def("loss_gradient", &loss_gradient_py, py::arg("dims"), py::arg("params"), py::arg("X"), py::arg("y"),
            py::arg("n_jobs"), py::arg("loss") = "cross_entropy", py::arg("huber_delta") = 1.f,
            "(mean loss, its gradient (P,) float64) of one model over the rows");
    mod.def("regression_errors", &regression_errors_py, py::arg("dims"), py::arg("params"), py::arg("X"), py::arg("y"),
            py::arg("n_jobs"));
    mod.def("evaluate", &evaluate_py, py::arg("dims"), py::arg("params"), py::arg("X"), py::arg("y"), py::arg("n_jobs"),
            py::arg("with_vote") = false, py::arg("vote_sum") = py::none(),
            "(loss, accuracy) per model; with_vote=True adds the summed probabilities (n, C) from the same pass, "
            "continuing from vote_sum (float64, updated in place) when given");
    mod.def("align_stack", &align_stack_py, py::arg("dims"), py::arg("params"), py::arg("reference"),
            py::arg("max_rounds"), py::arg("n_jobs"));
    mod.def("weighted_sum", &weighted_sum_py, py::arg("params"), py::arg("weights"), py::arg("n_jobs"));
    mod.def("clipped_update_sum", &clipped_update_sum_py, py::arg("params"), py::arg("global_row"), py::arg("clip"),
            py::arg("n_jobs"), "(sum of the updates params[i] - global clipped to norm clip (P,), their norms (N,))");
    mod.def("robust_reduce", &robust_reduce_py, py::arg("params"), py::arg("trim"), py::arg("n_jobs"),
            "trim < 0: coordinate-wise median; trim >= 0: trimmed mean dropping trim from each end");
    mod.def("kmeans", &kmeans_py, py::arg("X"), py::arg("k"), py::arg("seed"), py::arg("max_iter"), py::arg("n_jobs"));
    mod.def("pairwise_distances", &pairwise_distances_py, py::arg("X"), py::arg("n_jobs"));
    mod.def("silhouette", &silhouette_py, py::arg("dist"), py::arg("labels"), py::arg("k"));
    mod.def("preactivation_stats", &preactivation_stats_py, py::arg("dims"), py::arg("params"), py::arg("X"),
            py::arg("n_jobs"));
    mod.def("combine", &combine_py, py::arg("dims"), py::arg("params"), py::arg("X"), py::arg("mode"),
            py::arg("model_weights") = py::none(), py::arg("row_weights") = py::none(), py::arg("n_jobs") = -1,
            py::arg("with_votes") = false,
            "with_votes=True returns (combined, votes) from one forward pass of every model");
    mod.def("knn", &knn_py, py::arg("X"), py::arg("refs"), py::arg("k"), py::arg("n_jobs") = -1);
}
