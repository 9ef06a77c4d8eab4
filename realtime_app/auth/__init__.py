"""Who is asking: JWTs, stored users and their passwords, login rate limits, and which issued
tokens still hold (user states and login sessions, followed through MongoDB)."""
