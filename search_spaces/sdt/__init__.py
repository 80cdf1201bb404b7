"""Spike-driven Transformer (SDT, BICLab/Spike-Driven-Transformer), built with the official state_dict keys.

Follows ``model/spikeformer.py``, ``module/ms_conv.py`` and ``module/sps.py`` of the official repository
(``svit-architectures.md`` §3): the module tree, key names and shapes are the official ones, so official
checkpoints load with ``strict=True``, and the forward repeats the official operation sequence, so outputs
are bit-identical to the official code under spikingjelly 2.0.0 run on the same CPU/BLAS (the logits are
sums of head weights over binary ``head_lif`` spikes; another BLAS kernel may round them differently in
the last bit, see ``tests/search_spaces/test_sdt.py``).

Differences from the official code (all deliberate):

* ``forward`` returns the logits ``[B, K]`` only; the official one returns ``(logits, hook)``. There is no
  ``hook`` argument (use ``spikingjelly.activation_based.monitor`` to record spikes).
* Generalized widths: the attention reshapes use the q/k/v conv output width and the stored ``num_heads``,
  and the MLP reshape uses the stored ``c_hidden``; the official code uses the input channel count for
  q/k/v. Unpruned the two are the same numbers; after physical pruning of q/k/v channels (which in SDT are
  element-wise coupled, ``pruning-couplings.md`` §3) or of the MLP inner width no forward change is needed.
* Only the ImageNet/CIFAR layouts: no DVS mode (``Erode`` pooling), no TET output, no ``attn_mode``.
* Constructor arguments are keyword-only and named like the other hwsearch families (``embed_dim``,
  ``depth``, ``mlp_ratio``, ``img_size`` instead of ``embed_dims``, ``depths``, ``mlp_ratios``,
  ``img_size_h/w``).

Modules that the official code builds but never calls are kept so that module names match:
``patch_embed.rpe_lif``, ``block.{i}.attn.attn_lif`` (neurons without state_dict entries, except
``…w`` under ``spike_mode="plif"``), ``block.{i}.attn.talking_heads`` (``Conv1d [h, h, 1]``, in every
checkpoint) and ``block.{i}.drop_path`` (parameter-free, here always ``nn.Identity``).
"""

from search_spaces.sdt.layers import MSMLP, SPIKE_MODES, MSBlock, MSSPS, MSSSA
from search_spaces.sdt.model import SpikeDrivenTransformer
from search_spaces.sdt import configs as configs  # registers the configurations

__all__ = ["SpikeDrivenTransformer", "MSSPS", "MSSSA", "MSMLP", "MSBlock", "SPIKE_MODES"]
