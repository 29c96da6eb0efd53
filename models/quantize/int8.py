"""Dynamic int8 quantisation of a visual tower (ONNX Runtime's quantiser), for `livesku quantize`.

Weights of every MatMul with a constant operand become int8, per output channel and symmetric; activations
are quantised at run time, row by row (DynamicQuantizeMatMul), so no calibration set is needed and the
result depends on the weights alone (same input, same bytes). Attention's activation-by-activation MatMuls,
layer norms and GELU stay float32. Why not static QDQ with calibration: on the default tower it measured
slower (1.18x against 1.50x) and far less faithful (cosine 0.82 against 0.998 to float32), BENCHMARKS.md.
Why not MatMulNBits (8 or 4 bit weight-only): slower than float32 on this machine's AVX2.

Run in the set-up's venv (onnx + onnxruntime): python int8.py SRC.onnx DST.onnx
"""
import logging
import sys

from onnxruntime.quantization import QuantType, quantize_dynamic


def main(src: str, dst: str) -> None:
    # The quantiser suggests its shape-inference pre-pass; measured here it changes nothing (BENCHMARKS.md).
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, per_channel=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: int8.py SRC.onnx DST.onnx")
    main(sys.argv[1], sys.argv[2])
