"""Data access: every boto3 call of the backend lives in this package."""
