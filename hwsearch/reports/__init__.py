"""A run's outputs: ``trials.csv``, ``pareto.csv`` and the plot (``pareto``), ``report.md`` and the
best model's folder (``report``), the runners-up's plans and folders (``runplans``)."""
