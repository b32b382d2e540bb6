"""``torch.nn``'s layers in torch's layout, names and defaults: pure functions, and
``Layer(init, apply)`` pairs that compose as ``nn.Sequential`` does.

    model = fg.layers.Sequential(fg.layers.Conv2d(1, 8, 5, padding=2), fg.layers.ReLU(),
                                 fg.layers.MaxPool2d(2), fg.layers.Flatten(), fg.layers.Linear(8 * 14 * 14, 10))
    params, buffers = model.init(jax.random.key(0))
    logits, buffers = model.apply(params, buffers, images, train=False)

One module per idea: ``base`` (the ``Layer`` pair, its printed form, torch's default init,
the strict check of a layer's params), ``linear`` (Linear, MLP), ``conv`` (Conv2d), ``pool``
(pools, flatten), ``norm`` (BatchNorm, LayerNorm), ``embedding``, ``activations``,
``dropout`` (masks both frameworks share), ``attention`` (scaled dot-product attention,
``nn.MultiheadAttention``), ``transformer`` (``nn.TransformerEncoderLayer``), ``gpt``
(nanoGPT's blocks and model, the tied embedding) and ``sequential`` (the layers and their
composition).
"""

from funcgrad.layers.base import Layer
from funcgrad.layers.linear import linear_apply, linear_init, mlp_apply, mlp_init
from funcgrad.layers.attention import (
    MultiheadAttention,
    multihead_attention_apply,
    multihead_attention_init,
    scaled_dot_product_attention,
)
from funcgrad.layers.gpt import (
    GPT,
    GPTConfig,
    causal_self_attention_apply,
    causal_self_attention_init,
    gpt_apply,
    gpt_block_apply,
    gpt_block_init,
    gpt_from_state_dict,
    gpt_init,
    gpt_mlp_apply,
    gpt_mlp_init,
    gpt_to_state_dict,
    positional_embedding_apply,
)
from funcgrad.layers.transformer import (
    TransformerEncoderLayer,
    transformer_encoder_layer_apply,
    transformer_encoder_layer_init,
)
from funcgrad.layers.activations import elu, gelu, hardtanh, leaky_relu, mish, relu, relu6, sigmoid, silu, softplus, tanh
from funcgrad.layers.conv import conv2d_apply, conv2d_init
from funcgrad.layers.dropout import dropout, dropout_mask, layer_key, replay_dropout
from funcgrad.layers.embedding import embedding_apply, embedding_init
from funcgrad.layers.norm import batch_norm_apply, batch_norm_init, layer_norm_apply, layer_norm_init
from funcgrad.layers.pool import adaptive_avg_pool2d, avg_pool2d, flatten, max_pool2d
from funcgrad.layers.sequential import (
    ELU, GELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten, LayerNorm,
    LeakyReLU, Linear, MaxPool2d, ReLU, Sequential, Sigmoid, SiLU, Tanh,
)

__all__ = [
    # functions
    "linear_init", "linear_apply", "mlp_init", "mlp_apply", "conv2d_init", "conv2d_apply", "max_pool2d", "avg_pool2d", "flatten", "batch_norm_init", "batch_norm_apply",
    "layer_norm_init", "layer_norm_apply", "embedding_init", "embedding_apply", "dropout", "dropout_mask",
    "layer_key", "replay_dropout", "adaptive_avg_pool2d", "gelu", "relu", "leaky_relu", "elu", "silu", "sigmoid",
    "tanh", "softplus", "hardtanh", "relu6", "mish",
    "scaled_dot_product_attention", "multihead_attention_init", "multihead_attention_apply",
    "transformer_encoder_layer_init", "transformer_encoder_layer_apply", "causal_self_attention_init",
    "causal_self_attention_apply", "gpt_mlp_init", "gpt_mlp_apply", "gpt_block_init", "gpt_block_apply",
    "positional_embedding_apply", "gpt_init", "gpt_apply", "gpt_to_state_dict", "gpt_from_state_dict", "GPTConfig",
    # layers
    "Layer", "MultiheadAttention", "TransformerEncoderLayer", "GPT", "Sequential", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Embedding", "Dropout",
    "MaxPool2d", "AvgPool2d", "Flatten", "ReLU", "GELU", "LeakyReLU", "ELU", "SiLU", "Sigmoid", "Tanh",
]
