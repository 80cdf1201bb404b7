"""QKFormer (zhouchenlin2096/QKFormer): hierarchical spiking transformer with token-QK attention.

Two official module trees are reproduced with their exact state_dict keys and operation sequence
(``svit-architectures.md`` §4), so official checkpoints load strictly and compute the official numbers
(on the official test vectors the head input is exactly the official one; the logits can differ in the
last bits only where this CPU's fp32 GEMM rounds differently from the machine that wrote the vectors):

* :class:`QKFormer` follows ``imagenet/qkformer.py`` (``hierarchical_spiking_transformer``): pools in
  ``patch_embed1`` (two) and at the start of ``patch_embed{2,3}``, a ``proj2`` conv in ``patch_embed1``,
  MLP keys ``mlp.fc1_*``/``mlp.fc2_*``, stage-3 attention under ``attn.``, depths 1 + 2 + (L - 3).
* :class:`QKFormerCIFAR` follows ``cifar10/model.py`` = ``cifar100/model.py`` (``spiking_transformer``,
  timm name ``QKFormer``): no pools and no ``proj2`` in ``patch_embed1`` (residual 1x1 conv stride 1),
  the pool at the end of ``patch_embed{2,3}``, MLP keys ``mlp.mlp1_*``/``mlp.mlp2_*``, stage-3 attention
  under ``ssa.``, depths 1 + 1 + (L - 2). **Its constructor forces 8 heads in every stage** whatever
  ``num_heads`` says (the official code overwrites ``num_heads = [8, 8, 8]``); ``num_heads`` is still
  stored unchanged and the heads actually built are in ``stage_heads``.

Beyond the official code, every attention module takes its inner widths from its own q/k/v conv
output channels plus a stored ``num_heads`` (and optional per-head width tuples), and the MLP from its
stored ``c_hidden``; nothing is read from the input's channel count. Physically pruned models (sliced
weights + updated attributes) therefore run with this same forward code. Unpruned, the numbers are those
of the official code (all spike sums are small integers, so fp32 results are exact).

Official quirks reproduced on purpose:

* Stage-3 ``proj_lif`` is called on the folded ``[T*B, C, N]`` tensor, so its "time" axis is T*B (the
  membrane carries over batch elements in t-major order); outputs depend on the batch composition.
* ``imagenet/qkformer.py`` sets ``T=1`` as the default of ``QKFormer_10_*`` but trains with
  ``--time_step 4``; the registered ImageNet configurations here use ``T=4``.

Not reproduced: the official stage-3 attention reshapes its output to ``(T, B, C, W, H)`` (W and H
swapped), which only type-checks for square grids; here it is ``(T, B, C, H, W)``: identical for
square inputs and correct for the ``N' x 1`` token grids of token pruning.
"""

from search_spaces.qkformer._blocks import (
    CIFAR_FORCED_HEADS,
    MLP,
    SpikingSelfAttention,
    SpikingTransformer,
    TokenQKAttention,
    TokenSpikingTransformer,
)
from search_spaces.qkformer._embed import PatchEmbeddingStage, PatchEmbedInit
from search_spaces.qkformer.models import QKFormer, QKFormerCIFAR
from search_spaces.qkformer import configs as configs  # registers the configurations

__all__ = [
    "MLP",
    "TokenQKAttention",
    "SpikingSelfAttention",
    "TokenSpikingTransformer",
    "SpikingTransformer",
    "PatchEmbedInit",
    "PatchEmbeddingStage",
    "QKFormer",
    "QKFormerCIFAR",
    "CIFAR_FORCED_HEADS",
]
