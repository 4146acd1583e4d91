"""Enums and option tables of the TFLite flatbuffer schema (tensorflow/lite/schema/schema.fbs).

Data only, written from the schema (LiteRT 2.3's ``schema_py_generated``) so that reading a
.tflite file needs neither TensorFlow nor the LiteRT package.

Example:
    >>> TENSOR_TYPES[9], BUILTIN_OPERATORS[3]
    ('int8', 'CONV_2D')
    >>> BUILTIN_OPTIONS[1][0], BUILTIN_OPTIONS[1][1][5]
    ('Conv2DOptions', ('dilation_h_factor', '<i', 1))
"""

from __future__ import annotations

# TensorType, as NumPy dtype names where NumPy has the type (the rest in lower case).
TENSOR_TYPES: dict[int, str] = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16",
    19: "int2", 20: "uint4", 21: "float8_e4m3fn", 22: "float8_e5m2",
}  # fmt: skip

# BuiltinOperator: the name of code N is BUILTIN_OPERATORS[N].
BUILTIN_OPERATORS: tuple[str, ...] = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION",
    "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
    "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL",
    "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP",
    "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU",
    "MAXIMUM", "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL",
    "LESS_EQUAL", "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE",
    "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN",
    "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND",
    "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE",
    "FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE",
    "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS",
    "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG",
    "ROUND", "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D",
    "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT",
    "HASHTABLE_SIZE", "REDUCE_ALL", "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE",
    "ASSIGN_VARIABLE", "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM",
    "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD",
    "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN",
    "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT", "STABLEHLO_LOGISTIC", "STABLEHLO_ADD",
    "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY", "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE",
    "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM",
    "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE",
    "STABLEHLO_ABS", "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR", "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD", "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW",
    "STABLEHLO_SORT", "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE", "STABLEHLO_SHIFT_LEFT",
    "STABLEHLO_CBRT", "STABLEHLO_CASE",
)  # fmt: skip
CUSTOM = BUILTIN_OPERATORS.index("CUSTOM")
# OperatorCode.deprecated_builtin_code holds this for every code above 126 (int8 field).
PLACEHOLDER_FOR_GREATER_OP_CODES = 127

# The BuiltinOptions union members the analysis reads: union type -> (table name, fields in
# schema order as (name, struct format, default)). Other members are verified, not decoded.
BUILTIN_OPTIONS: dict[int, tuple[str, tuple[tuple[str, str, int], ...]]] = {
    1: ("Conv2DOptions", (
        ("padding", "<b", 0), ("stride_w", "<i", 0), ("stride_h", "<i", 0),
        ("fused_activation_function", "<b", 0), ("dilation_w_factor", "<i", 1),
        ("dilation_h_factor", "<i", 1), ("quantized_bias_type", "<b", 0),
    )),
    2: ("DepthwiseConv2DOptions", (
        ("padding", "<b", 0), ("stride_w", "<i", 0), ("stride_h", "<i", 0),
        ("depth_multiplier", "<i", 0), ("fused_activation_function", "<b", 0),
        ("dilation_w_factor", "<i", 1), ("dilation_h_factor", "<i", 1),
    )),
    5: ("Pool2DOptions", (
        ("padding", "<b", 0), ("stride_w", "<i", 0), ("stride_h", "<i", 0),
        ("filter_width", "<i", 0), ("filter_height", "<i", 0),
        ("fused_activation_function", "<b", 0),
    )),
    8: ("FullyConnectedOptions", (
        ("fused_activation_function", "<b", 0), ("weights_format", "<b", 0),
        ("keep_num_dims", "<B", 0), ("asymmetric_quantize_inputs", "<B", 0),
        ("quantized_bias_type", "<b", 0),
    )),
    10: ("ConcatenationOptions", (("axis", "<i", 0), ("fused_activation_function", "<b", 0))),
    32: ("StridedSliceOptions", (
        ("begin_mask", "<i", 0), ("end_mask", "<i", 0), ("ellipsis_mask", "<i", 0),
        ("new_axis_mask", "<i", 0), ("shrink_axis_mask", "<i", 0), ("offset", "<B", 0),
    )),
    59: ("PackOptions", (("values_count", "<i", 0), ("axis", "<i", 0))),
}  # fmt: skip


def operator_name(builtin: int, custom_code: str | None = None) -> str:
    """An op's name: the BuiltinOperator name, or ``CUSTOM:code`` for a custom op.

    Example:
        >>> operator_name(3), operator_name(32, "edgetpu-custom-op"), operator_name(999)
        ('CONV_2D', 'CUSTOM:edgetpu-custom-op', 'BUILTIN_999')
    """
    if custom_code:
        return "CUSTOM:" + custom_code
    if 0 <= builtin < len(BUILTIN_OPERATORS):
        return BUILTIN_OPERATORS[builtin]
    return f"BUILTIN_{builtin}"
