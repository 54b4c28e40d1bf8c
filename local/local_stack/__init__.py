"""The local stack: AWS's DynamoDB Local, moto server, an API Gateway WebSocket emulator and
Lambda-like event-source pollers, running the same handler files that deploy."""
