"""The chat backend's CDK stack: constructs per capability, every one built from `chat_backend.wiring`."""

from chat_stack.stack import ChatStack, build

__all__ = ["ChatStack", "build"]
