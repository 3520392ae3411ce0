"""A run's life after training: its result, its folder (config, checkpoints, model card), predict."""
