"""Training: the one trainer every training method shares (schedules, data order, checkpoints,
precision), the ``train:`` settings stages carry, and the classifier fine-tune that the zoo
(``minilm-intent``) and the ``finetune`` stage run on it."""
