"""Live updates: the change feed (or the polling feed), the hub that routes each change to the
live queries that may see it, each connection's outbox, the wire encoding, and the connection
that speaks the protocol of docs/PROTOCOL.md."""
