"""realtime-app: live MongoDB data over REST and SockJS."""

__version__ = "0.1.0"
