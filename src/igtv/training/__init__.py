"""Training: 2D GTV pre-training, 2.5D IGTV fine-tuning with weight transfer, single process or DDP."""
