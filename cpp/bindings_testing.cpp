// _core._testing: hooks into single kernels, for segfast's tests and benchmarks only (the package
// never calls them). Each runs one kernel on numpy arrays, the fast or the reference version,
// with the same checks as bindings.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "assign.h"
#include "dispatch.h"
#include "finite.h"
#include "gemm.h"
#include "py_arrays.h"

namespace py = pybind11;
using namespace segfast;
using namespace segfast::py_arrays;

namespace {

// Test and benchmark hook for the kernel itself: epilogue(A @ B) or epilogue(A^T @ B).
void gemm_py(py::handle a_obj, py::handle b_obj, py::handle c_obj, bool trans_a, const std::string& epilogue,
             py::handle bias_obj, py::handle velocity_obj, float lr, float momentum, float weight_decay,
             py::handle anchor_obj, float prox, bool reference) {
    auto a = expect<float>(a_obj, "a", {-1, -1});
    const py::ssize_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
    auto b = expect<float>(b_obj, "b", {k, -1});
    const py::ssize_t n = b.shape(1);
    auto c = expect<float>(c_obj, "c", {m, n}, true);
    GemmArgs g;
    g.m = static_cast<int>(m);
    g.n = static_cast<int>(n);
    g.k = static_cast<int>(k);
    g.a = a.data();
    g.a_rs = trans_a ? 1 : a.shape(1);
    g.a_ks = trans_a ? a.shape(1) : 1;
    g.b = b.data();
    g.ldb = n;
    g.c = c.mutable_data();
    g.ldc = n;
    Epilogue e;
    Array<float> bias, vel, anchor;
    if (epilogue == "store") e = Epilogue::Store;
    else if (epilogue == "add") e = Epilogue::Add;
    else if (epilogue == "bias" || epilogue == "bias_relu") {
        e = epilogue == "bias" ? Epilogue::Bias : Epilogue::BiasRelu;
        bias = expect<float>(bias_obj, "bias", {n});
        g.bias = bias.data();
    } else if (epilogue == "sgd") {
        e = Epilogue::Sgd;
        if (!velocity_obj.is_none()) {
            vel = expect<float>(velocity_obj, "velocity", {m, n}, true);
            g.velocity = vel.mutable_data();
        }
        g.sgd.lr = lr;
        g.sgd.momentum = momentum;
        g.sgd.weight_decay = weight_decay;
        if (!anchor_obj.is_none()) {
            anchor = expect<float>(anchor_obj, "anchor", {m, n});
            g.anchor = anchor.data();
            g.sgd.prox = prox;
        }
    } else {
        throw py::value_error("epilogue must be 'store', 'add', 'bias', 'bias_relu' or 'sgd', got '" + epilogue + "'");
    }
    py::gil_scoped_release release;
    if (reference) reference_kernels().gemm(e, g);
    else gemm(e, g);
}

// Test hook for the solver and its starts: prices and row_duals (float64, n), when given, are read
// by the start that names them and overwritten with the solution's.
py::tuple max_assignment_py(py::handle score_obj, bool reference, const std::string& start_name, py::handle prices_obj,
                            py::handle row_duals_obj) {
    auto score = expect<float>(score_obj, "score", {-1, -1});
    const py::ssize_t n = score.shape(0);
    if (score.shape(1) != n) throw py::value_error("score must be square, got " + shape_of(score));
    Start start;
    if (start_name == "cold") start = Start::Cold;
    else if (start_name == "prices") start = Start::Prices;
    else if (start_name == "row_duals") start = Start::RowDuals;
    else throw py::value_error("start must be 'cold', 'prices' or 'row_duals', got '" + start_name + "'");
    if (!all_finite(score.data(), static_cast<std::size_t>(n * n))) throw py::value_error("score must be finite");
    Array<double> prices, row_duals;
    if (!prices_obj.is_none()) prices = expect<double>(prices_obj, "prices", {n}, true);
    if (!row_duals_obj.is_none()) row_duals = expect<double>(row_duals_obj, "row_duals", {n}, true);
    py::array_t<int> perm(n);
    int* out = perm.mutable_data();
    double* p = prices_obj.is_none() ? nullptr : prices.mutable_data();
    double* u = row_duals_obj.is_none() ? nullptr : row_duals.mutable_data();
    double total;
    {
        py::gil_scoped_release release;
        AssignWorkspace ws;
        total = reference ? max_assignment_reference(score.data(), static_cast<int>(n), out, ws)
                          : max_assignment(score.data(), static_cast<int>(n), out, ws, start, p, u);
    }
    return py::make_tuple(perm, total);
}

py::array_t<float> transpose_py(py::handle a_obj, bool reference) {
    auto a = expect<float>(a_obj, "a", {-1, -1});
    const int rows = static_cast<int>(a.shape(0)), cols = static_cast<int>(a.shape(1));
    py::array_t<float> out({a.shape(1), a.shape(0)});
    auto fn = reference ? reference_kernels().transpose : &transpose;
    fn(a.data(), cols, rows, cols, out.mutable_data(), rows);
    return out;
}

}  // namespace

void bind_testing(py::module_& testing) {
    testing.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
                py::arg("epilogue") = "store", py::arg("bias") = py::none(), py::arg("velocity") = py::none(),
                py::arg("lr") = 0.f, py::arg("momentum") = 0.f, py::arg("weight_decay") = 0.f,
                py::arg("anchor") = py::none(), py::arg("prox") = 0.f, py::arg("reference") = false,
                "c = epilogue(a @ b) or epilogue(a.T @ b) in place, through gemm() or the reference kernel.");
    testing.def("transpose", &transpose_py, py::arg("a"), py::arg("reference") = false,
                "a.T through the packing kernel.");
    testing.def("max_assignment", &max_assignment_py, py::arg("score"), py::arg("reference") = false,
                py::arg("start") = "cold", py::arg("prices") = py::none(), py::arg("row_duals") = py::none(),
                "(perm, total) of the assignment maximising score; reference=True: the Hungarian oracle.");
}
