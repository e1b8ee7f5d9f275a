"""One accelerator booking: the runbook of measurements, its own steps, and the wheels a node without network needs."""
