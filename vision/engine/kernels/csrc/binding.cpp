// The Python module of the engine kernels: binds the operators of ops.h (implemented in the ops_*.cpp
// files) and the weight layout's constants. Every op but release_thread_pool releases the GIL while it runs.
#include <torch/extension.h>

#include "ops.h"
#include "vk.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear", &ops::linear, "int8 weight-only linear, int8 activations per 32-block",
        py::call_guard<py::gil_scoped_release>());
  m.def("linear4", &ops::linear4, "int4 group-wise (32) weight-only linear, int8 activations per 32-block",
        py::call_guard<py::gil_scoped_release>());
  m.def("dequant", &ops::dequant, "columns [n0, n1) of the weight, dequantized",
        py::call_guard<py::gil_scoped_release>());
  m.def("rms_norm_bf16", &ops::rms_norm_bf16, "RMSNorm of bf16 rows (F.rms_norm's arithmetic), one call",
        py::call_guard<py::gil_scoped_release>());
  m.def("add_rms_norm_bf16", &ops::add_rms_norm_bf16, "hidden += delta, then RMSNorm of it (bf16), one call",
        py::call_guard<py::gil_scoped_release>());
  m.def("decode_qk_rope_store", &ops::decode_qk_rope_store,
        "decode rows: q/k RMSNorm, rotary, keys and values into their arena slots; returns q",
        py::call_guard<py::gil_scoped_release>());
  m.def("decode_attention", &ops::decode_attention, "decode rows of a step against their KV-arena slots, bf16",
        py::call_guard<py::gil_scoped_release>());
  m.def("attention_pack", &ops::attention_pack, "keys and values packed for prefill_attention",
        py::call_guard<py::gil_scoped_release>());
  m.def("prefill_attention", &ops::prefill_attention, "query rows against packed keys/values into out, bf16",
        py::call_guard<py::gil_scoped_release>());
  m.def("linear_bf16", &ops::linear_bf16, "bf16 linear of few rows (decode), weight as nn.Linear keeps it",
        py::call_guard<py::gil_scoped_release>());
  m.def("gelu_tanh_", &ops::gelu_tanh_, "GELU (tanh approximation) of contiguous fp32 values, in place",
        py::arg("x"), py::arg("isa"), py::call_guard<py::gil_scoped_release>());
  m.def("vision_qkv_rope_bf16", &ops::vision_qkv_rope_bf16,
        "a vision block's q/k (rotary) and v from its fp32 qkv output, as (3, rows, heads, d) bf16", py::arg("qkv"),
        py::arg("cos"), py::arg("sin"), py::arg("heads"), py::arg("isa"),
        py::call_guard<py::gil_scoped_release>());
  m.def("int8_dot_peak", &ops::int8_dot_peak,
        "int8 multiply-adds of a register-only loop on every thread (time it)",
        py::call_guard<py::gil_scoped_release>());
  m.def("release_thread_pool", &ops::release_thread_pool, "free the calling thread's OpenMP pool; 0 on success");
  m.def("parallel_threads", &ops::parallel_threads, "threads one parallel_for of n items ran on",
        py::call_guard<py::gil_scoped_release>());
  m.attr("BLOCK") = vk::kBlock;
  m.attr("PANEL") = vk::kPanel;
}
