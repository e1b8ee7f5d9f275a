"""Is the synthetic data good? Statistical fidelity, physical validity, novelty, plots and the report."""
