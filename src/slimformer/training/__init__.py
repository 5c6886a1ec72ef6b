"""Training: the trainer every training method shares, its checkpoints and precision, and the
cached classifier fine-tune the zoo builds ``minilm-intent`` with."""
