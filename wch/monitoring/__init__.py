"""What the dashboard, ``/metrics`` and ``/healthz`` report: the numbers, RabbitMQ's queues, durations in words."""
