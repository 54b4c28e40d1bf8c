"""Powertools logger shared by every function (structured JSON logs, Lambda context injected)."""

from aws_lambda_powertools import Logger

logger = Logger()  # service name from POWERTOOLS_SERVICE_NAME, set by the wiring
