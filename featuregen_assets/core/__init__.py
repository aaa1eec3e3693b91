"""Domain logic of featuregen in plain Python: no Dagster, no environment variables.

Each package is one domain; settings arrive as arguments."""
