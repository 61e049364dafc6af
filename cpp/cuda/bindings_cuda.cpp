// The Python bindings of the CUDA path (compiled only with SEGFAST_WITH_CUDA). Same rules as
// bindings.cpp: every array is checked before the device sees it, and the GIL is released
// around the device work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../py_arrays.h"
#include "../threads.h"
#include "cuda_check.h"
#include "device.h"
#include "resident_epoch.h"

namespace py = pybind11;
using namespace segfast;
using namespace segfast::py_arrays;

namespace {

class PyTrainer {
   public:
    PyTrainer(const std::vector<int>& dims, py::handle x_obj, py::handle y_obj) : arch_(arch_of(dims)) {
        auto x = expect<float>(x_obj, "X", {-1, arch_.n_in()});
        auto y = expect<std::int64_t>(y_obj, "y", {x.shape(0)});
        check_labels(y.data(), x.shape(0), arch_.n_out());
        n_rows_ = x.shape(0);
        py::gil_scoped_release release;
        trainer_ = std::make_unique<cuda::Trainer>(dims, x.data(), x.shape(0), y.data());
    }

    void set_models(py::handle params_obj) {
        auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch_.n_params)});
        py::gil_scoped_release release;
        trainer_->set_models(params.data(), static_cast<int>(params.shape(0)));
    }

    void resize_models(int n_models) {
        if (n_models < 0) throw py::value_error("n_models must be >= 0");
        trainer_->resize_models(n_models);
    }

    void get_models(py::handle out_obj) {
        auto out = expect<float>(out_obj, "out", {trainer_->n_models(), static_cast<py::ssize_t>(arch_.n_params)},
                                 true);
        float* o = out.mutable_data();
        py::gil_scoped_release release;
        trainer_->get_models(o);
    }

    void set_anchor(py::handle row_obj) {
        if (row_obj.is_none()) {
            trainer_->set_anchor(nullptr);
            return;
        }
        auto row = expect<float>(row_obj, "anchor", {static_cast<py::ssize_t>(arch_.n_params)});
        trainer_->set_anchor(row.data());
    }

    py::tuple epoch(py::handle order_obj, py::handle offsets_obj, py::handle active_obj, py::handle epoch_obj,
                    std::uint64_t seed, int batch_size, float lr, float momentum, float weight_decay, float prox,
                    int flip_width, std::int64_t first_model, int n_jobs, py::handle start_obj,
                    py::handle merge_weights_obj) {
        const py::ssize_t n = trainer_->n_models();
        auto offsets = expect<std::int64_t>(offsets_obj, "offsets", {n + 1});
        auto order = expect<std::int64_t>(order_obj, "order", {-1});
        auto active = expect<std::uint8_t>(active_obj, "active", {n});
        auto epochs = expect<std::int64_t>(epoch_obj, "epoch", {n});
        check_epoch(arch_, n, n_rows_, order, offsets, batch_size, flip_width);
        cuda::EpochArgs a;
        a.order = order.data();
        a.offsets = offsets.data();
        a.active = active.data();
        a.epoch = epochs.data();
        a.config = EpochConfig{batch_size,  SgdStep{lr, momentum, weight_decay, prox},
                               seed,        flip_width,
                               first_model, resolve_threads(n_jobs)};
        Array<float> start;
        if (!start_obj.is_none()) {
            start = expect<float>(start_obj, "start", {static_cast<py::ssize_t>(arch_.n_params)});
            a.start_row = start.data();
        }
        Array<double> merge_weights;
        py::array_t<double> merged(static_cast<py::ssize_t>(arch_.n_params));
        cuda::EpochOutputs out;
        if (!merge_weights_obj.is_none()) {
            merge_weights = expect<double>(merge_weights_obj, "merge_weights", {n});
            a.merge_weights = merge_weights.data();
            out.merged = merged.mutable_data();
        }
        py::array_t<double> mean_loss(n);
        py::array_t<std::uint8_t> diverged(n);
        out.mean_loss = mean_loss.mutable_data();
        out.diverged = diverged.mutable_data();
        {
            py::gil_scoped_release release;
            trainer_->epoch(a, out);
        }
        if (a.merge_weights) return py::make_tuple(mean_loss, diverged.attr("astype")("bool"), merged);
        return py::make_tuple(mean_loss, diverged.attr("astype")("bool"));
    }

   private:
    Arch arch_;
    py::ssize_t n_rows_ = 0;  // rows of X on the device: order must stay within them
    std::unique_ptr<cuda::Trainer> trainer_;
};

}  // namespace

void bind_cuda(py::module_& mod, py::module_& testing) {
    py::register_exception<cuda::DeviceMemoryError>(mod, "CudaMemoryError", PyExc_MemoryError);
    mod.def("cuda_unavailable_reason", &cuda::unavailable_reason);
    mod.def("cuda_device_name", &cuda::device_name);
    mod.def("cuda_memory_in_use", &cuda::memory_in_use, "Bytes of device memory in use (every process's).");
    testing.def(
        "cuda_resident_plan",
        [](const std::vector<int>& dims, int n_active, int max_rows, bool momentum, bool one_step) {
            const cuda::ResidentPlan plan = cuda::plan_resident(arch_of(dims), n_active, max_rows, momentum, one_step);
            py::dict out;
            out["ok"] = plan.ok;
            out["cluster"] = plan.cluster;
            out["units"] = plan.units;
            out["rows"] = plan.rows;
            out["shared_bytes"] = plan.smem;
            out["clusters_at_once"] = plan.active_clusters;
            out["considered"] = plan.considered;
            return out;
        },
        py::arg("dims"), py::arg("n_active"), py::arg("max_rows"), py::arg("momentum"), py::arg("one_step") = false,
        "How the resident epoch kernel would train these models (ok False: the per-layer path).");
    py::class_<PyTrainer>(mod, "CudaTrainer", "Training data and models resident on the GPU.")
        .def(py::init<const std::vector<int>&, py::handle, py::handle>(), py::arg("dims"), py::arg("X"), py::arg("y"))
        .def("set_models", &PyTrainer::set_models, py::arg("params"))
        .def("resize_models", &PyTrainer::resize_models, py::arg("n_models"))
        .def("get_models", &PyTrainer::get_models, py::arg("out"))
        .def("set_anchor", &PyTrainer::set_anchor, py::arg("row"))
        .def("epoch", &PyTrainer::epoch, py::arg("order"), py::arg("offsets"), py::arg("active"), py::arg("epoch"),
             py::arg("seed"), py::arg("batch_size"), py::arg("lr"), py::arg("momentum"), py::arg("weight_decay"),
             py::arg("prox"), py::arg("flip_width"), py::arg("first_model"), py::arg("n_jobs"),
             py::arg("start") = py::none(), py::arg("merge_weights") = py::none());
    mod.def(
        "cuda_predict_proba",
        [](const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, bool log) {
            const Arch arch = arch_of(dims);
            auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)});
            auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
            py::array_t<float> probs({params.shape(0), x.shape(0), static_cast<py::ssize_t>(arch.n_out())});
            float* out = probs.mutable_data();
            {
                py::gil_scoped_release release;
                cuda::predict_proba(dims, params.data(), static_cast<int>(params.shape(0)), x.data(), x.shape(0), out,
                                    log);
            }
            return probs;
        },
        py::arg("dims"), py::arg("params"), py::arg("X"), py::arg("log") = false);
    mod.def(
        "cuda_evaluate",
        [](const std::vector<int>& dims, py::handle params_obj, py::handle x_obj, py::handle y_obj) {
            const Arch arch = arch_of(dims);
            auto params = expect<float>(params_obj, "params", {-1, static_cast<py::ssize_t>(arch.n_params)});
            auto x = expect<float>(x_obj, "X", {-1, arch.n_in()});
            auto y = expect<std::int64_t>(y_obj, "y", {x.shape(0)});
            check_labels(y.data(), x.shape(0), arch.n_out());
            if (x.shape(0) == 0) throw py::value_error("X has no rows");
            py::array_t<double> loss(params.shape(0)), accuracy(params.shape(0));
            double* l = loss.mutable_data();
            double* a = accuracy.mutable_data();
            {
                py::gil_scoped_release release;
                cuda::evaluate(dims, params.data(), static_cast<int>(params.shape(0)), x.data(), x.shape(0), y.data(),
                               l, a);
            }
            return py::make_tuple(loss, accuracy);
        },
        py::arg("dims"), py::arg("params"), py::arg("X"), py::arg("y"));
}
