"""model: the BiT training side (PyTorch + transformers).

quant (quantizers with STE gradients), bit_bert (the BiT BERT), export (to the artifact),
data (GLUE and the offline `mr` task), metrics. May import golden (NumPy); never hw or sim.
Import the submodules directly, e.g. ``from model.bit_bert import BitBertForSequenceClassification``.
"""
