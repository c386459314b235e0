"""The pieces of ``python -m bench``: targets (adapter + raw client), measurements, the report."""
