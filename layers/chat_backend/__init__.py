"""Shared package of the chat backend: models, logic, data access. Shipped as the Lambda layer."""
