"""Spikformer (ZK-Zhou/spikformer) in its three official layouts, with official state_dict keys.

* :class:`SpikformerImageNet` follows ``imagenet/model.py``: Conv1d q/k/v/proj, Conv2d 1x1 MLP, tensors
  ``[T,B,C,H,W]`` between blocks, attention ``(q @ (kᵀ @ v)) * 0.125``, four SPS max-pools.
* :class:`SpikformerCIFAR` follows ``cifar10/model.py``: Linear q/k/v/proj/MLP (all with bias) + BN1d,
  channels-last ``[T,B,N,C]``, attention ``((q @ kᵀ) * 0.125) @ v``, SPS pools after conv2 and conv3.
* :class:`SpikformerDVS` follows ``cifar10dvs/model.py``: Conv1d q/k/v/proj/MLP, ``[T,B,C,N]``,
  attention ``((q @ kᵀ) @ v) * 0.25``, a pool after every SPS conv, dead ``pos_embed`` and ``norm``.

The forward passes repeat the official operation sequence (reshapes, flatten order, thresholds, LIF
placement), so an official checkpoint loads with ``strict=True`` and gives bit-identical logits. Two
deliberate generalisations, both exact for unpruned models:

* the attention takes its inner widths from its own q/k/v weights and ``num_heads`` (not from the
  input's channel count), and the MLP reshapes with ``c_hidden``; physically pruned heads, q/k/v
  channels or MLP channels therefore need no new forward code;
* spatial sizes in the SPS reshapes come from the tensors, not from literals (the official DVS file
  hard-codes 64/32/16) and the ImageNet ``T`` is a constructor argument (official literal ``T = 4``).

Never-called, parameter-free official modules (``drop_path``, DVS ``attn_drop`` and ``res_lif``) are
left out; the never-called LayerNorms (``norm1``/``norm2``, DVS ``pos_embed``/``norm``) are kept
because official checkpoints contain them.
"""

from search_spaces.spikformer._common import SpikformerBlock
from search_spaces.spikformer.cifar import MLPCIFAR, SPSCIFAR, SSACIFAR, SpikformerCIFAR
from search_spaces.spikformer.dvs import MLPDVS, SPSDVS, SSADVS, SpikformerDVS
from search_spaces.spikformer.imagenet import MLPImageNet, SPSImageNet, SSAImageNet, SpikformerImageNet
from search_spaces.spikformer import configs as configs  # registers the configurations

__all__ = [
    "SpikformerImageNet",
    "SpikformerCIFAR",
    "SpikformerDVS",
    "SPSImageNet",
    "SPSCIFAR",
    "SPSDVS",
    "SSAImageNet",
    "SSACIFAR",
    "SSADVS",
    "MLPImageNet",
    "MLPCIFAR",
    "MLPDVS",
    "SpikformerBlock",
]
