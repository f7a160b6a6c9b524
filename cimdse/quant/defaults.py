"""Training lengths shared by ``train``, the search and the benchmarks. No torch here:
the command line shows them in its help without importing the trainer."""

PRETRAIN_EPOCHS = 40  # float pre-training
QAT_EPOCHS = 15  # quantization-aware fine-tuning
