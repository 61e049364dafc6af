// Array checks shared by the pybind11 files: dtype, C order and shape (with the shapes in the
// message) are checked here before a kernel sees a pointer.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "arch.h"

namespace segfast::py_arrays {

namespace py = pybind11;

template <class T>
using Array = py::array_t<T, py::array::c_style>;  // no forcecast: a wrong dtype is refused

inline std::string shape_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// Checks dtype, C order, and shape (-1 = any extent) of an argument, naming it on failure.
template <class T>
inline Array<T> expect(const py::handle& obj, const char* name, std::vector<py::ssize_t> shape, bool writable = false) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(obj);
    // Equivalent dtypes, not the identical object: arrays that went through pickle carry
    // their own (equal) dtype instance.
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                             ", got " + std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
    if (writable && !a.writeable()) throw py::value_error(std::string(name) + " must be writable");
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(i) == shape[i];
    if (!ok) {
        std::string want = "(";
        for (std::size_t i = 0; i < shape.size(); ++i)
            want += (i ? ", " : "") + (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
        throw py::value_error(std::string(name) + " must have shape " + want + (shape.size() == 1 ? ",)" : ")") +
                              ", got " + shape_of(a));
    }
    return py::reinterpret_borrow<Array<T>>(a);
}

inline Arch arch_of(const std::vector<int>& dims) {
    if (dims.size() < 2) throw py::value_error("dims must list at least an input and an output width");
    for (int d : dims)
        if (d < 1) throw py::value_error("every layer width in dims must be >= 1");
    return Arch(dims);
}

// Labels must index the output layer: anything else would read past a row of logits.
inline void check_labels(const std::int64_t* y, py::ssize_t n, int classes) {
    for (py::ssize_t i = 0; i < n; ++i)
        if (y[i] < 0 || y[i] >= classes)
            throw py::value_error("y holds label " + std::to_string(y[i]) + ", outside [0, " + std::to_string(classes) +
                                  ")");
}

// The arguments of a training epoch that address memory: the minibatch size, the flip width
// (it must divide a row), offsets bounding order, order bounding X's n_rows rows.
inline void check_epoch(const Arch& arch, py::ssize_t n_models, py::ssize_t n_rows, const Array<std::int64_t>& order,
                        const Array<std::int64_t>& offsets, int batch_size, int flip_width) {
    if (batch_size < 1) throw py::value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
    if (flip_width < 0 || (flip_width > 0 && arch.n_in() % flip_width != 0))
        throw py::value_error("flip width must divide the number of features");
    const std::int64_t* off = offsets.data();
    if (off[0] != 0 || off[n_models] != order.shape(0))
        throw py::value_error("offsets must start at 0 and end at len(order)");
    for (py::ssize_t i = 0; i < n_models; ++i)
        if (off[i + 1] < off[i]) throw py::value_error("offsets must be non-decreasing");
    for (py::ssize_t i = 0; i < order.shape(0); ++i)
        if (order.data()[i] < 0 || order.data()[i] >= n_rows)
            throw py::value_error("order holds row " + std::to_string(order.data()[i]) + ", outside [0, " +
                                  std::to_string(n_rows) + ")");
}

}  // namespace segfast::py_arrays
