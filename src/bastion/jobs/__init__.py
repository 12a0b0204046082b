"""Async jobs: the queue interface and its backends (embedded SQL queue today; RabbitMQ next)."""
