"""Runs that compose the agents with the diffusion model and the environments, from a config:
the online loop, the offline pipeline's data stages, behaviour policies for new datasets."""
