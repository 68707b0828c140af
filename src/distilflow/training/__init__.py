"""The training loop, its checkpoints and curves, the dev scorer it calls, what pretrain leaves."""
