"""ember: a self-hostable serverless function platform that speaks Lambda's API."""

__version__ = "0.1.0"
