"""labelloop: labels large datasets with humans and certified machine labels."""

__version__ = "0.1.0"
