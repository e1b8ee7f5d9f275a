"""The paper's results reproduced: one module per table or figure, the runners that make them, and the
report that turns their results JSONs into the tables of README.md and docs/."""
