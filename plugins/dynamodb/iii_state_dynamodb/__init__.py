"""iii-state-dynamodb: the ``dynamodb`` adapter — scoped JSON state in one DynamoDB table."""

from .adapter import DynamoDBAdapter
from .config import Settings, parse_settings

__all__ = ["DynamoDBAdapter", "Settings", "parse_settings"]
