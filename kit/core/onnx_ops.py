"""ONNX operator names the kit looks for in a graph, in one place: what makes a graph QDQ
(explicitly quantized, as TensorRT builds it), what quantizes activations, and every op a
quantized graph may hold."""

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops that turn float activations into integers at run time (static QDQ, or dynamic int8).
ACTIVATION_QUANTIZERS = ("QuantizeLinear", "DynamicQuantizeLinear")
QUANTIZED_OPS = QDQ_OPS | {"DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger",
                           "QGemm", "QLinearAdd"}
