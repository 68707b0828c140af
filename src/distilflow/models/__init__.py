"""The networks: teacher and student loading, batching, inference, devices."""
