"""Training: networks, loss, augmentation, datasets and the training loop."""
