"""train: models and how they learn.

The backbone registry (``backbones``), model building, saving and loading (``models``),
pretrain/finetune (``transfer``: the API; its options ``config``, the data a run reads
``training_data``, TensorFlow's set-up and strategy ``distribute``, the fit loop and stages
``fit``, model outputs ``inference``, the figures ``evaluate``, what a run prints
``messages``, the run directory it writes ``run_writer``), class-incremental ``extend``
(``incremental``, ``memory``, ``linear_head``), BatchNorm-aware validation (``batchnorm``),
the model's own input range (``input_range``), training-health warnings (``health``), QAT
and pruning models (``optimize``, ``qat_layers``, ``qat_scheme``) and run folders (``runs``).

May import: ``core``, ``runtime``, ``data``.
"""
