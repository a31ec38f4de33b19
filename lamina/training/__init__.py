"""Training: the trainer loop, data adapters and callbacks."""
