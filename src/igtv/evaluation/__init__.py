"""Evaluation metrics (paper Eqs. 9-12)."""
