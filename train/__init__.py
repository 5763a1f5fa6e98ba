"""Training stage: the paper's AlexNet trained from prep's shards."""
