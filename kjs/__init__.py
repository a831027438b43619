"""kjs: a Kafka-native distributed job scheduler (command line and shared settings)."""

__version__ = "0.1.0"
