"""The K-quants (Q4_K_M, Q5_K_M, Q6_K) through llama.cpp's own quantizer, where llama-cpp-python
is installed. The gguf package does not quantise them (its K-quant types only dequantise), and
llama.cpp's quantizer also picks per-tensor types (the "_M" mixes keep some attention and FFN
tensors a step higher), which is what makes those files what their users expect.

The export writes an F16 GGUF first, the input llama.cpp's own workflow quantises from, then
asks llama.cpp to quantise it into the target. Without llama-cpp-python these types are refused
in one line that names the types that need nothing.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
from pathlib import Path

from engine.core import errors

log = logging.getLogger("engine.export")

# Tunebench's name -> llama.cpp's llama_ftype (include/llama.h)
FTYPES = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
NEEDS = "llama-cpp-python, which setup installs"  # the bootstrap builds it where no wheel fits


def available() -> bool:
    """Whether llama.cpp's quantizer can be called (found without loading it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def check_available(outtype: str) -> None:
    if not available():
        raise errors.missing_dependency(
            f"outtype: {outtype} needs llama.cpp's quantizer ({NEEDS}); q8_0, q5_0 and q4_0 need nothing")


def quantize(source: Path, target: Path, outtype: str) -> None:
    """Quantises the F16/F32 GGUF ``source`` into ``target`` as ``outtype``, with llama.cpp."""
    check_available(outtype)
    import llama_cpp  # optional: the K-quants only
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[outtype]
    params.nthread = max(1, os.cpu_count() or 1)
    log.info("Quantising to %s with llama.cpp %s", outtype.upper(), getattr(llama_cpp, "__version__", ""))
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0:
        raise errors.invalid_input(f"outtype: llama.cpp's quantizer could not write {outtype} (status {status}); "
                                   "q8_0, q5_0 and q4_0 are written without it")
