"""HTTP handlers: thin layers that parse, authorise, call a service and serialise."""
