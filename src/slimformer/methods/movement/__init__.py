"""Movement pruning (Sanh et al. 2020): prune the weights fine-tuning moves towards zero.

Magnitude pruning keeps the weights that are large now; after fine-tuning a
pre-trained model, what matters is where the task pushes the weights. Scores
learned next to the weights (through a straight-through estimator) measure
that movement, and the lowest-scored weights are pruned while training.
"""
