"""train: models and how they learn.

The backbone registry (``backbones``), model building, saving and loading (``models``),
pretrain/finetune (``transfer``), class-incremental ``extend`` (``incremental``, ``memory``,
``linear_head``), BatchNorm-aware validation (``batchnorm``), the model's own input range
(``input_range``), training-health warnings (``health``), QAT and pruning models
(``optimize``, ``qat_layers``, ``qat_scheme``) and run folders (``runs``).

May import: ``core``, ``runtime``, ``data``.
"""
